"""`forecast serve` (uvicorn) on a free port as a real process, talked to over HTTP, and the real
`forecast train` command the end-to-end registries are trained with."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd

from tests.support.cli import CliResult, run_forecast

FORECAST = [sys.executable, "-m", "forecast.cli"]
START_TIMEOUT_S = 90.0
# Two small models on hourly data: input 48, horizon 12.
TRAIN_ARGS = [
    "--input-size",
    "48",
    "--horizon",
    "12",
    "--hidden-size",
    "16",
    "--val-size",
    "48",
    "--test-size",
    "48",
    "--max-epochs",
    "3",
    "--seed",
    "0",
    "--device",
    "cpu",
    "--quiet",
]


def run_cli(*args: str, registry: Path, check: bool = True) -> CliResult:
    """`forecast ARGS --registry REGISTRY` in a fresh process (tests.conftest.run_forecast)."""
    result = run_forecast(*args, "--registry", registry)
    if check and result.returncode != 0:
        raise AssertionError(f"forecast {' '.join(args)} failed: {result.stderr}")
    return result


def train(registry: Path, data: Path, name: str, arch: str, *extra: str) -> CliResult:
    return run_cli("train", "--data", str(data), "--name", name, "--arch", arch, *TRAIN_ARGS, *extra, registry=registry)


# The covariates of demo-driven (tests.factories.covariate_frame), by kind.
COVARIATE_FLAGS = ("--past-covariates", "load", "--future-covariates", "temperature", "--static-covariates", "region")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def client(self, timeout_s: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        return int(self.process.returncode)


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll a condition with a bound; the only waiting the e2e tests do."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def start_server(registry: Path, log_dir: Path, command: list[str] | None = None, **settings: str) -> Server:
    """`forecast serve` (or `command`, which takes `--port`) with FORECAST_ settings, once ready."""
    port = free_port()
    env = {**os.environ, "FORECAST_REGISTRY": str(registry), "FORECAST_SHUTDOWN_GRACE_S": "0"}
    env["FORECAST_WORKERS"] = "1"  # one process unless a test asks for more (the default is one per core)
    env.update({f"FORECAST_{key.upper()}": value for key, value in settings.items()})
    log = log_dir / f"server-{port}.log"
    handle = open(log, "wb")  # noqa: SIM115 - the server process writes it until it exits
    process = subprocess.Popen(
        [*(command or [*FORECAST, "serve"]), "--port", str(port)], stdout=handle, stderr=subprocess.STDOUT, env=env
    )
    server = Server(process=process, url=f"http://127.0.0.1:{port}", log=log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {server.log_text()}")
        try:
            return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, START_TIMEOUT_S, "the server to become ready", interval_s=0.2)
    return server


# Series the e2e models (input 48, horizon 12) answer: the first 100 points of history.csv.
HISTORY_POINTS = 100
# A generous bound for a machine shared with other work; the failures this guards against
# held /healthz for seconds to minutes.
HEALTHZ_BOUND_S = 1.0


def series_payload(history_csv: Path, series_id: str = "a", points: int = HISTORY_POINTS) -> dict[str, object]:
    frame = pd.read_csv(history_csv)
    rows = frame[frame.series_id == series_id].iloc[:points]
    return {"id": series_id, "timestamps": rows.timestamp.tolist(), "values": rows.value.tolist()}


@contextmanager
def healthz_latencies(url: str) -> Iterator[list[float]]:
    """/healthz polled from another connection for as long as the block runs."""
    latencies: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started)

    watcher = threading.Thread(target=poll)
    watcher.start()
    wait_until(lambda: latencies, 30, "the first /healthz answer")
    try:
        yield latencies
        polled = len(latencies)
        wait_until(lambda: len(latencies) > polled, 30, "a /healthz answer after the request")
    finally:
        stop.set()
        watcher.join()


def started_workers(server: Server) -> list[int]:
    return [int(pid) for pid in re.findall(r"started worker (\d+)", server.log_text())]


def started_inference_processes(server: Server) -> list[int]:
    return [int(pid) for pid in re.findall(r"started inference process (\d+)", server.log_text())]
