"""Fixtures of the end-to-end tests: a registry trained by the real `forecast train` command,
and `forecast serve` started on it (helpers: tests/support/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import covariate_frame
from tests.support.data import seasonal_frame
from tests.support.servers import COVARIATE_FLAGS, Server, run_cli, start_server, train


@pytest.fixture(scope="session")
def history_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "history.csv"
    seasonal_frame(series_ids=("a", "b"), n_points=400).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory, history_csv: Path) -> Path:
    """demo-lstm versions 1 (production) and 2 (alias staging), demo-gru version 1.

    demo-gru is a deliberately weak production version (its skip fitted by 3 epochs from zero, not
    solved first): its network loses the gate, so the version is the anchor that stands in (it may
    read more points than the network's 48: read its input size from the API), one that a normal
    training beats (tests/e2e/test_replicas.py).
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
