"""The inference process's server (forecast/serving/device_process.py) in-process, over real
connection pairs: batches that several workers queued meanwhile run as one forward pass, each
answered with its own rows; batches of other versions, or past the merge limit, are not merged
into it; a pass that fails answers an error to every batch in it, and the server goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client import REGISTRY

import forecast.serving.device_process as device_process
from forecast.registry.store import Registry
from forecast.registry.weights import load_predictor
from forecast.serving.device_process import DeviceServer
from forecast.serving.pipeline import WindowArrays, raw_windows
from forecast.serving.wire import Message, decode, describe, encode
from tests.support.registries import publish_network
from tests.support.registry_writer import SMALL_NETWORK

NAME = "demo"
WORKERS = 3


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    publish_network(registry, NAME)
    publish_network(registry, NAME)
    return registry


@pytest.fixture
def links(registry: Registry) -> Iterator[tuple[DeviceServer, list[Connection]]]:
    """The server and the worker ends of WORKERS connections; its inference thread not started."""
    server = DeviceServer(registry, torch.device("cpu"))
    workers = []
    for holder in range(WORKERS):
        worker_end, device_end = Pipe()
        threading.Thread(target=server.serve_connection, args=(device_end, holder), daemon=True).start()
        workers.append(worker_end)
    yield server, workers
    for connection in workers:
        connection.close()


def batch(rows: int, seed: int) -> WindowArrays:
    """The five window arrays of a version without calendar features or covariates."""
    size = SMALL_NETWORK.input_size
    history = np.random.default_rng(seed).normal(10, 2, size=(rows, size)).astype(np.float32)
    calendar = np.zeros((rows, size, 0), dtype=np.float32)
    return history, calendar, np.zeros((rows, 0, 0)), np.zeros((rows, 0, 0)), np.zeros((rows, 0))


def send(connection: Connection, message_id: int, version: int, arrays: WindowArrays) -> None:
    message = Message(op="forward", id=message_id, model=NAME, version=version, arrays=describe(arrays))
    connection.send_bytes(encode(message, arrays))


def queued_then_run(server: DeviceServer, count: int) -> None:
    """Wait until `count` batches are queued (each worker's reader loads, then queues), then
    start the device's thread, so that what merges does not depend on timing."""
    deadline = time.monotonic() + 30
    while len(server._batches) < count:  # the queue is what this test controls
        assert time.monotonic() < deadline, "the batches were not queued"
        time.sleep(0.01)
    threading.Thread(target=server.run_inference, daemon=True).start()


def passes(version: int) -> tuple[float, float]:
    labels = {"model": NAME, "version": str(version)}
    count = REGISTRY.get_sample_value("forecast_device_batch_size_count", labels) or 0.0
    return count, REGISTRY.get_sample_value("forecast_device_batch_size_sum", labels) or 0.0


def test_batches_queued_by_several_workers_run_as_one_pass_each_answered_with_its_rows(
    registry: Registry, links: tuple[DeviceServer, list[Connection]]
) -> None:
    server, workers = links
    inputs = [batch(rows, seed) for seed, rows in enumerate((2, 3, 5))]
    before = passes(1)
    for index, (connection, arrays) in enumerate(zip(workers, inputs, strict=True)):
        send(connection, 100 + index, 1, arrays)
    queued_then_run(server, WORKERS)
    predictor = load_predictor(registry, NAME, 1, torch.device("cpu")).predictor
    for index, (connection, arrays) in enumerate(zip(workers, inputs, strict=True)):
        assert connection.poll(30), "no answer"
        message, (mean, spread) = decode(connection.recv_bytes())
        assert (message.op, message.id) == ("result", 100 + index)
        alone = predictor.predict(raw_windows(arrays))
        np.testing.assert_allclose(mean, alone.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(spread, alone.spread, rtol=1e-5, atol=1e-6)
    after = passes(1)
    assert after[0] - before[0] == 1, "the three workers' batches were not merged into one pass"
    assert after[1] - before[1] == 10


def test_other_versions_and_series_past_the_limit_wait_for_their_own_pass(
    registry: Registry, links: tuple[DeviceServer, list[Connection]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, workers = links
    monkeypatch.setattr(device_process, "MERGED_SERIES_MAX", 6)
    before_v1, before_v2 = passes(1), passes(2)
    send(workers[0], 1, 1, batch(4, 0))
    send(workers[1], 2, 2, batch(4, 1))  # another version: never in version 1's pass
    send(workers[2], 3, 1, batch(4, 2))  # 4 + 4 > 6: its own pass
    queued_then_run(server, 3)
    for connection in workers:
        assert connection.poll(30), "no answer"
        assert decode(connection.recv_bytes())[0].op == "result"
    assert passes(1)[0] - before_v1[0] == 2 and passes(2)[0] - before_v2[0] == 1


def test_a_failed_pass_answers_an_error_to_each_of_its_batches_and_the_next_is_served(
    links: tuple[DeviceServer, list[Connection]],
) -> None:
    server, workers = links
    good = batch(2, 0)
    history, features, past, future, static = good
    wrong = (history[:, :3].copy(), features[:, :3].copy(), past, future, static)  # shorter than the network's input
    send(workers[0], 1, 1, wrong)
    send(workers[1], 2, 1, wrong)
    queued_then_run(server, 2)
    for connection, message_id in zip(workers[:2], (1, 2), strict=True):
        assert connection.poll(30), "no answer"
        message, arrays = decode(connection.recv_bytes())
        assert (message.op, message.id, arrays) == ("error", message_id, [])
        assert message.error
    send(workers[2], 3, 1, good)
    assert workers[2].poll(30), "the server stopped after a failed pass"
    assert decode(workers[2].recv_bytes())[0].op == "result"
