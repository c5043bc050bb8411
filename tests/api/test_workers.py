"""The worker supervisor (api/runtime/workers.py) with tiny workers in real processes: they share one
port, a killed worker is replaced and its live gauge leaves the merged metrics, SIGTERM stops
every worker and the supervisor exits 0 leaving nothing behind, and a worker that cannot start
stops the supervisor at once. Also how the worker count and threads follow the machine."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from api.runtime import cores
from api.runtime.cores import threads_per_worker, usable_cores, worker_count
from tests.support.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def start_supervisor(mode: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "tests.api.supervised", mode, str(port)],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def pid_at(port: int) -> int | None:
    """The pid of the worker that accepted a new connection, None when nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            return int(connection.recv(32) or 0) or None
    except OSError:
        return None


def pids_answering(port: int, wanted: int, exclude: frozenset[int] = frozenset()) -> set[int]:
    """Connect until `wanted` distinct workers not in `exclude` answered."""
    seen: set[int] = set()

    def enough() -> bool:
        pid = pid_at(port)
        if pid is not None and pid not in exclude:
            seen.add(pid)
        return len(seen) >= wanted

    wait_until(enough, 30, f"{wanted} workers to answer")
    return seen


def live_workers_gauge(folder: Path) -> float:
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=str(folder))
    return merged.get_sample_value("test_live_workers") or 0.0


def test_workers_share_the_port_a_dead_one_is_replaced_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "supervisor.log"
    supervisor = start_supervisor("answer", port, log)
    try:
        first, second = sorted(pids_answering(port, 2))
        folder = Path(re.search(r"merged from (\S+)", log.read_text()).group(1))  # type: ignore[union-attr]
        wait_until(lambda: live_workers_gauge(folder) == 2.0, 10, "both workers' gauges")

        os.kill(first, signal.SIGKILL)
        pids_answering(port, 1, exclude=frozenset({first, second}))  # a replacement serves
        # The killed worker's gauge is gone (mark_process_dead); the replacement's counts.
        wait_until(lambda: live_workers_gauge(folder) == 2.0, 10, "the replacement's gauge")
        assert not list(folder.glob(f"*_{first}.db"))

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    output = log.read_text()
    started = [int(pid) for pid in re.findall(r"started worker (\d+)", output)]
    assert len(started) == 3, output  # two, then one replacement
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()], "workers outlived the supervisor"
    assert not folder.exists(), "the metrics folder outlived the supervisor"
    assert pid_at(port) is None


def test_a_worker_that_cannot_start_stops_the_supervisor_with_exit_1(tmp_path: Path) -> None:
    log = tmp_path / "supervisor.log"
    supervisor = start_supervisor("fail", free_port(), log)
    assert supervisor.wait(timeout=60) == 1
    output = log.read_text()
    assert "could not start" in output and len(re.findall(r"started worker", output)) <= 2, output


def test_an_inference_process_starts_first_is_replaced_when_it_dies_and_stops_after_the_workers(
    tmp_path: Path,
) -> None:
    port, log = free_port(), tmp_path / "supervisor.log"
    supervisor = start_supervisor("device", port, log)
    try:
        workers_seen = pids_answering(port, 2)
        device = pids_answering(port + 1, 1).pop()
        os.kill(device, signal.SIGKILL)
        replacement = pids_answering(port + 1, 1, exclude=frozenset({device})).pop()
        assert pids_answering(port, 2) == workers_seen  # the workers were not restarted with it

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    lines = log.read_text().splitlines()
    started = [line for line in lines if line.startswith("started ")]
    assert started[0].startswith("started inference process"), lines
    exits = [line for line in lines if " exited with " in line]
    # The workers drained first: the inference process their drains needed stopped last.
    assert [line.split()[0] for line in exits] == ["worker", "worker", "inference"], lines
    assert f"inference process {replacement} exited with" in exits[-1]
    assert not [pid for pid in (*workers_seen, replacement) if Path(f"/proc/{pid}").exists()]
    assert pid_at(port + 1) is None


def test_the_worker_count_and_threads_follow_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "usable_cores", lambda: 8)
    assert cores.worker_count(0) == 8 and cores.worker_count(3) == 3
    assert cores.threads_per_worker(0, 4) == 2 and cores.threads_per_worker(0, 16) == 1
    assert cores.threads_per_worker(6, 4) == 6  # FORECAST_TORCH_THREADS wins
    monkeypatch.undo()
    assert worker_count(0) == usable_cores() >= 1 and threads_per_worker(0, 1) == usable_cores()
