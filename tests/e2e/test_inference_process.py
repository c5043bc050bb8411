"""FORECAST_INFERENCE=per_device with real processes: two workers send their batches to one
inference process, which answers the same forecasts as a one-process server, and
when it is killed is replaced while the workers serve on: the requests meanwhile get a 503 with
Retry-After (never a 500) and readiness fails, and the ones after it are answered again."""

from __future__ import annotations

import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.servers import (
    Server,
    series_payload,
    start_server,
    started_inference_processes,
    wait_until,
)


@pytest.fixture(scope="module")
def device_server(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Any:
    logs = tmp_path_factory.mktemp("inference")
    server = start_server(registry_template, logs, workers="2", inference="per_device", max_wait_ms="5")
    yield server
    server.stop()


def bulk(history_csv: Path) -> dict[str, Any]:
    series = [series_payload(history_csv, "a"), series_payload(history_csv, "b")]
    return {
        "model": "demo-lstm",
        "levels": [80],
        "series": [{**s, "id": f"{s['id']}-{i}"} for i in range(8) for s in series],
    }


def test_the_forecasts_are_those_of_one_process(
    device_server: Server, history_csv: Path, tmp_path: Path, registry_template: Path
) -> None:
    payload = bulk(history_csv)
    single = start_server(registry_template, tmp_path)  # one process, its own forward passes
    try:
        with single.client() as client:
            expected = client.post("/v1/forecast", json=payload).json()
    finally:
        single.stop()
    with device_server.client() as client:
        response = client.post("/v1/forecast", json=payload)
    assert response.status_code == 200, response.text
    got = response.json()
    assert [f["id"] for f in got["forecasts"]] == [f["id"] for f in expected["forecasts"]]
    for mine, theirs in zip(got["forecasts"], expected["forecasts"], strict=True):
        assert mine["timestamps"] == theirs["timestamps"]
        np.testing.assert_allclose(mine["mean"], theirs["mean"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            mine["intervals"]["80"]["lower"], theirs["intervals"]["80"]["lower"], rtol=1e-5, atol=1e-6
        )


def device_passes(server: Server) -> tuple[float, float]:
    """(forward passes, series) of the inference process for demo-lstm version 1."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = {
        kind: float(match.group(1))
        for kind in ("count", "sum")
        if (
            match := re.search(
                rf'^forecast_device_batch_size_{kind}\{{model="demo-lstm",version="1"\}} (\S+)$', text, re.M
            )
        )
    }
    return found.get("count", 0.0), found.get("sum", 0.0)


def test_concurrent_requests_of_both_workers_run_in_the_inference_process_in_shared_passes(
    device_server: Server, history_csv: Path
) -> None:
    payload = {"model": "demo-lstm", "series": [series_payload(history_csv, "a")]}
    passes_before, series_before = device_passes(device_server)

    def one(_: int) -> int:
        with httpx.Client(base_url=device_server.url, timeout=30) as client:  # a new connection: either worker
            return client.post("/v1/forecast", json=payload).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(160)))
    assert statuses == [200] * 160
    passes, series = device_passes(device_server)
    assert series - series_before == 160  # every series ran in the inference process, once
    # and some passes carried several requests' series (merging across workers is asserted
    # deterministically in tests/serving/test_device_process.py: two workers rarely queue at once)
    assert passes - passes_before < 160


def test_a_killed_inference_process_is_replaced_and_no_request_gets_a_500(
    device_server: Server, history_csv: Path
) -> None:
    payload = {"model": "demo-gru", "series": [series_payload(history_csv, "b")]}
    first = started_inference_processes(device_server)
    assert len(first) == 1, device_server.log_text()
    os.kill(first[0], signal.SIGKILL)

    def unready() -> dict[str, Any] | None:  # the replacement imports torch first: seconds
        response = httpx.get(f"{device_server.url}/readyz", timeout=10)
        return response.json() if response.status_code == 503 else None

    body = wait_until(unready, 30, "readiness to fail while no inference process listens", interval_s=0.02)
    assert not body["draining"] and body["inference"]["reachable"] is False, body
    assert "inference process" in body["inference"]["error"], body
    answers: list[httpx.Response] = []

    def answered_again() -> bool:
        with httpx.Client(base_url=device_server.url, timeout=30) as client:
            answers.append(client.post("/v1/forecast", json=payload))
        return answers[-1].status_code == 200 and len(started_inference_processes(device_server)) == 2

    wait_until(answered_again, 60, "forecasts from the replacement inference process", interval_s=0.1)
    for response in answers:
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert "inference process" in response.json()["message"] and "Retry-After" in response.headers
    with device_server.client() as client:  # every worker reaches the new process, and is ready
        assert all(client.post("/v1/forecast", json=payload).status_code == 200 for _ in range(8))
        for _ in range(8):
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["inference"] == {"reachable": True, "error": None}
