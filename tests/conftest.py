"""Shared fixtures: small synthetic series written as real files, and the `forecast` command run
as a real process into a temporary registry.

Every CLI invocation imports torch (a few seconds on two cores), so the bad-input matrix runs
through `run_forecast_many`: one interpreter pays the import once and forks a fresh child
process per invocation, which then runs exactly what the `forecast` console script runs
(`sys.exit(main())`) with its own stdout/stderr files.
"""

from __future__ import annotations

import json
import multiprocessing.process
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# A good small configuration: trains in a few seconds on two cores and beats seasonal naive.
SMALL_MODEL_ARGS: tuple[str, ...] = (
    "--arch",
    "lstm",
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
    "6",
    "--seed",
    "0",
    "--device",
    "cpu",
    "--quiet",
)
SERIES_IDS: tuple[str, ...] = ("a", "b", "c")
POINTS_PER_SERIES = 400
CLI_TIMEOUT_S = 240


def seasonal_frame(
    series_ids: tuple[str, ...] = SERIES_IDS, n_points: int = POINTS_PER_SERIES, seed: int = 0
) -> pd.DataFrame:
    """Hourly long-format series: a daily cycle, a slow trend and AR(1) noise.

    The AR noise makes the last value informative and the trend shifts each day against the
    day before, so seasonal naive is good but beatable.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for index, series_id in enumerate(series_ids):
        steps = np.arange(n_points)
        noise = np.zeros(n_points)
        for t in range(1, n_points):
            noise[t] = 0.9 * noise[t - 1] + rng.normal(0.0, 0.3)
        values = 10.0 + 2 * index + 3.0 * np.sin(2 * np.pi * steps / 24 + index) + 0.03 * steps + noise
        frames.append(
            pd.DataFrame(
                {
                    "series_id": series_id,
                    "timestamp": pd.date_range("2024-01-01", periods=n_points, freq="h"),
                    "value": values,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


@dataclass(slots=True)
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        return f"forecast {' '.join(self.argv)} -> {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def forecast_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m forecast.cli`."""
    script = Path(sys.executable).parent / "forecast"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "forecast.cli"]


def child_env() -> dict[str, str]:
    """The caller's environment with one intra-op thread per child process.

    On two shared cores torch's default thread pool spins against other work and a tiny train
    takes 20x longer; one thread also makes the weights independent of the core count.
    """
    env = dict(os.environ)
    env.pop("FORECAST_REGISTRY", None)  # every invocation names its registry explicitly
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_forecast(*args: str | Path, cwd: Path | None = None, timeout_s: float = CLI_TIMEOUT_S) -> CliResult:
    """The real `forecast` command in a fresh process."""
    argv = [str(arg) for arg in args]
    completed = subprocess.run(
        [*forecast_command(), *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return CliResult(argv, completed.returncode, completed.stdout, completed.stderr)


def train(data: Path, registry: Path, name: str, *extra: str, defaults: bool = True) -> CliResult:
    """`forecast train` into `registry`; fails the test with the output when it does not exit 0."""
    args = [*(SMALL_MODEL_ARGS if defaults else ()), *extra]
    result = run_forecast("train", "--data", data, "--name", name, "--registry", registry, *args)
    assert result.returncode == 0, result.describe()
    return result


# Runs in a fresh interpreter: imports the CLI once, then forks one child per invocation.
_FORK_RUNNER = r"""
import json, os, sys, traceback
import forecast.cli
import forecast.training.job  # torch and scikit-learn, imported once here rather than in every child

cases = json.load(sys.stdin)
codes = []
for case in cases:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(case["cwd"])
            for fd, path in ((1, case["stdout"]), (2, case["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            sys.argv = ["forecast", *case["argv"]]
            code = forecast.cli.main(case["argv"])
        except SystemExit as exc:  # what the interpreter does with sys.exit(...)
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    codes.append(os.waitstatus_to_exitcode(status))
json.dump(codes, sys.stdout)
"""


def run_forecast_many(invocations: list[list[str]], workdir: Path) -> list[CliResult]:
    """Each invocation of `forecast` in its own process (forked after one shared import)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cases = [
        {
            "argv": [str(arg) for arg in argv],
            "cwd": str(workdir),
            "stdout": str(workdir / f"{index}.stdout"),
            "stderr": str(workdir / f"{index}.stderr"),
        }
        for index, argv in enumerate(invocations)
    ]
    completed = subprocess.run(
        [sys.executable, "-c", _FORK_RUNNER],
        input=json.dumps(cases),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    codes = json.loads(completed.stdout)
    return [
        CliResult(case["argv"], code, Path(case["stdout"]).read_text(), Path(case["stderr"]).read_text())
        for case, code in zip(cases, codes, strict=True)
    ]


def files_under(root: Path) -> list[str]:
    """Every file and folder below root, relative: what a command wrote there."""
    if not root.exists():
        return []
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def aliases(registry: Path, name: str) -> dict[str, int]:
    return read_json(registry / name / "aliases.json")


def manifest(registry: Path, name: str, version: int) -> dict:
    return read_json(registry / name / "versions" / str(version) / "manifest.json")


@dataclass(slots=True)
class TrainedRegistry:
    """A registry holding one good version of `name`, trained once per session on `data`."""

    root: Path
    name: str
    data: Path
    output: CliResult

    def copy_to(self, target: Path) -> Path:
        """A private copy for a test that adds versions or moves aliases."""
        shutil.copytree(self.root, target)
        return target


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> TrainedRegistry:
    workdir = tmp_path_factory.mktemp("trained")
    data = write_csv(seasonal_frame(), workdir / "series.csv")
    root = workdir / "registry"
    output = train(data, root, "demo")
    return TrainedRegistry(root=root, name="demo", data=data, output=output)


def messy_frame(seed: int = 0) -> pd.DataFrame:
    """seasonal_frame as users bring it: series 'a' with missing values (empty cells) in every
    block, 'b' with missing timestamps, 'c' a new series of 40 points, 'd' a new one of 5."""
    rng = np.random.default_rng(seed)
    frame = seasonal_frame(("a", "b", "c", "d"), seed=seed)
    rows = {sid: frame.index[frame["series_id"] == sid] for sid in ("a", "b", "c", "d")}
    frame.loc[rng.choice(rows["a"][1:-1], 25, replace=False), "value"] = np.nan
    frame = frame.drop(rng.choice(rows["b"][1:-1], 20, replace=False))
    return frame.drop([*rows["c"][:-40], *rows["d"][:-5]]).reset_index(drop=True)


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
