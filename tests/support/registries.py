"""Small registries written in process: a GRU of a few weights per version, published through
the registry's own `publish`, for tests that need a servable model in milliseconds; tagged
versions of plain bytes; and the racing writer processes of tests/support/registry_writer.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from forecast.model.intervals import calibrate
from forecast.model.network import Forecaster
from forecast.registry.manifest import REPORT_FILE, WEIGHTS_FILE
from forecast.registry.store import PRODUCTION, Registry
from forecast.registry.weights import weights_bytes
from tests.support.cli import child_env
from tests.support.registry_writer import SMALL_CHANNELS, SMALL_NETWORK, make_manifest, tagged_files

# Started as a module from the repository root, as tests/support/s3.py starts its server.
ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


def publish_network(registry: Registry, name: str, report: bytes = b"{}") -> int:
    """A small GRU (hourly, input 8, horizon 4) with random weights and a real calibration (the
    engine serves intervals), and `report` as its report.json; returns its version."""
    torch.manual_seed(registry.versions(name)[-1] if registry.versions(name) else 0)
    network = Forecaster(SMALL_NETWORK, SMALL_CHANNELS)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    scores = np.abs(np.random.default_rng(0).normal(size=(50, SMALL_NETWORK.horizon)))  # (W, H)
    draft = make_manifest(name, 0, {}).model_copy(update={"intervals": calibrate(scores)})
    files = {WEIGHTS_FILE: weights_bytes(network), REPORT_FILE: report}
    return registry.publish(name, files, draft).version


def move_alias(registry: Registry, name: str, version: int, alias: str = PRODUCTION) -> None:
    with registry.locked(name):
        registry.set_alias(name, alias, version)


def publish_tagged(registry: Registry, name: str, tag: str, size: int = 1000) -> int:
    return registry.publish(name, tagged_files(tag, size), make_manifest(name, 0, {}, tag)).version


def wait_for(condition, what: str, timeout_s: float = WAIT_S):  # type: ignore[no-untyped-def]
    """Poll a condition on files until it holds; bounded."""
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.0005)
    return result


class Writers:
    """tests/support/registry_writer.py: one parent process that forks `count` writers."""

    def __init__(self, root: Path, name: str, workdir: Path, count: int, versions: int, size: int) -> None:
        self.workdir = workdir
        workdir.mkdir()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.registry_writer",
                str(root),
                name,
                str(workdir),
                "--writers",
                str(count),
                "--versions",
                str(versions),
                "--size",
                str(size),
            ],
            env=child_env(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        pids_file = workdir / "pids.json"
        self.pids: list[int] = wait_for(lambda: pids_file.exists() and json.loads(pids_file.read_text()), "writers")

    def go(self) -> None:
        (self.workdir / "go").touch()

    def published(self, index: int) -> list[int]:
        log = self.workdir / f"published-{index}"
        return [int(line) for line in log.read_text().split()] if log.exists() else []

    def finish(self) -> list[int]:
        """Each writer's exit status (negative: killed by that signal)."""
        try:
            stdout, stderr = self.process.communicate(timeout=WAIT_S)
        finally:
            self.stop()
        assert self.process.returncode == 0, stderr
        return json.loads(stdout)

    def stop(self) -> None:
        if self.process.poll() is None:
            for pid in self.pids:
                kill_quietly(pid)
            self.process.kill()
            self.process.wait()


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
