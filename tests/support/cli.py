"""The `forecast` command run as a real process into a temporary registry.

Every CLI invocation imports torch (a few seconds on two cores), so the bad-input matrix runs
through `run_forecast_many`: one interpreter pays the import once and forks a fresh child
process per invocation, which then runs exactly what the `forecast` console script runs
(`sys.exit(main())`) with its own stdout/stderr files.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from forecast.registry.store import Registry
from forecast.serving.engine import Engine
from forecast.settings import Settings
from tests.factories import Posted

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
CLI_TIMEOUT_S = 240


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


def serve_once(registry_root: Path, name: str, timestamps: list[str], values: list[float]) -> list[float]:
    """One series through the engine's loading and the version's serving pipeline (batcher and
    network included), as a request would go."""

    posted = Posted("s", values, start=None, freq=None, timestamps=timestamps)

    async def run() -> list[float]:
        engine = Engine(
            Registry(registry_root), Settings(registry=str(registry_root), device="cpu", reload_seconds=3600)
        )
        await engine.start()
        try:
            async with engine.lease(name) as served:
                answer = await served.pipeline.forecast([posted], horizon=None, levels=[], timeout_s=30.0)
                return [float(v) for v in answer.mean[0]]
        finally:
            await engine.stop()

    return asyncio.run(run())


def version_dir(registry: Path, name: str, version: int) -> Path:
    return registry / name / "versions" / str(version)
