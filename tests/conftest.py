"""Fixtures shared by every test (a trained registry), and the one rule that marks which tests
start processes. The helpers the tests share live in tests/support/."""

from __future__ import annotations

import multiprocessing.process
import subprocess
from pathlib import Path

import pytest

# A good small configuration: trains in a few seconds on two cores and beats seasonal naive.
from tests.support.cli import TrainedRegistry, train
from tests.support.data import seasonal_frame, write_csv


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> TrainedRegistry:
    workdir = tmp_path_factory.mktemp("trained")
    data = write_csv(seasonal_frame(), workdir / "series.csv")
    root = workdir / "registry"
    output = train(data, root, "demo")
    return TrainedRegistry(root=root, name="demo", data=data, output=output)


# ---- which tests are e2e: decided here, and only here ------------------------------------------
#
# A test that starts a process (a server, the trainer, an S3 server, a worker, a build tool) is
# `e2e`; `make test-fast` runs the rest (`-m "not e2e"`) for the inner loop. The rule: every test
# under tests/e2e/, every test of a module below, and every test that uses a fixture below. A
# test outside the rule that starts a process fails, naming this place (the guard below).
PROCESS_MODULES = frozenset(
    {
        "tests/test_cli.py",
        "tests/test_client_package.py",
        "tests/test_containers.py",
        "tests/test_docs.py",
        "tests/test_layers.py",
        "tests/api/test_auth.py",
        "tests/api/test_gc_tuning.py",
        "tests/api/test_workers.py",
        "tests/registry/test_accuracy.py",
        "tests/registry/test_s3.py",
        "tests/registry/test_store.py",
        "tests/registry/test_weights.py",
        "tests/serving/test_device_process.py",
        "tests/training/test_distributed.py",
        "tests/training/test_job.py",
        "tests/training/test_job_covariates.py",
        "tests/training/test_job_gaps.py",
    }
)
PROCESS_FIXTURES = frozenset({"trained_registry", "s3_server", "s3_url", "registry_template", "server_factory"})
_ROOT = Path(__file__).resolve().parent.parent


def starts_processes(item: pytest.Item) -> bool:
    where = item.path.resolve().relative_to(_ROOT).as_posix()
    fixtures = set(getattr(item, "fixturenames", ()))
    return where.startswith("tests/e2e/") or where in PROCESS_MODULES or bool(fixtures & PROCESS_FIXTURES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if starts_processes(item):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _no_process_outside_e2e(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps the rule above true: a test it does not mark may not start a process."""
    if request.node.get_closest_marker("e2e") is not None:
        return
    where = request.node.nodeid

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{where} starts a process: list its module in tests/conftest.py's PROCESS_MODULES")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
