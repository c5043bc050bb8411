"""Real processes for the end-to-end tests: a registry trained by the real `forecast train`
command, and `forecast serve` (uvicorn) on a free port, talked to over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import CliResult, run_forecast, seasonal_frame
from tests.factories import covariate_frame

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


@pytest.fixture(scope="session")
def history_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "history.csv"
    seasonal_frame(series_ids=("a", "b"), n_points=400).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory, history_csv: Path) -> Path:
    """demo-lstm versions 1 (production) and 2 (alias staging), demo-gru version 1.

    demo-gru is a deliberately weak production version (its skip fitted by 3 epochs from zero, not
    solved first): past the gate, but one that a normal training beats (tests/e2e/test_replicas.py).
    demo-lstm version 2 is weak alike, so that its forecasts surely differ from version 1's: a seed
    alone may not change them, as 3 epochs on this data need not beat the solved start."""
    registry = tmp_path_factory.mktemp("registry-template")
    weak = tmp_path_factory.mktemp("configs") / "weak-gru.json"
    weak.write_text('{"solve_skip": false}')
    train(registry, history_csv, "demo-lstm", "lstm")
    # --no-refit: the version serves the network its report evaluated (tests/e2e/test_api.py checks the skew)
    train(registry, history_csv, "demo-gru", "gru", "--config", str(weak), "--no-refit")
    train(registry, history_csv, "demo-lstm", "lstm", "--seed", "1", "--config", str(weak))
    run_cli("models", "promote", "demo-lstm", "2", "--alias", "staging", registry=registry)
    return registry


# The covariates of demo-driven (tests.factories.covariate_frame), by kind.
COVARIATE_FLAGS = ("--past-covariates", "load", "--future-covariates", "temperature", "--static-covariates", "region")


@pytest.fixture(scope="session")
def covariate_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "driven.csv"
    covariate_frame(n_points=400).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def covariate_registry(tmp_path_factory: pytest.TempPathFactory, covariate_csv: Path) -> Path:
    """demo-driven version 1: a version that reads a past, a future-known and a static covariate."""
    registry = tmp_path_factory.mktemp("covariate-registry")
    # --no-refit: the version serves the network its report evaluated (test_covariates checks it)
    train(registry, covariate_csv, "demo-driven", "lstm", *COVARIATE_FLAGS, "--force", "--no-refit")
    return registry


@pytest.fixture
def registry(tmp_path: Path, registry_template: Path) -> Path:
    """A private copy of the trained registry, so a test may add versions or corrupt files."""
    import shutil

    copy = tmp_path / "registry"
    shutil.copytree(registry_template, copy)
    return copy


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


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[Server] = []

    def factory(registry: Path, **settings: str) -> Server:
        server = start_server(registry, tmp_path, **settings)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Iterator[Server]:
    """One read-only server for the tests that only send requests."""
    server = start_server(
        registry_template,
        tmp_path_factory.mktemp("logs"),
        max_series_per_request="50",
        max_points_per_series="5000",
        max_body_bytes="400000",
    )
    yield server
    server.stop()
