"""Registry writers in real processes, for the SIGKILL and concurrency tests of tests/registry/test_store.py and test_s3.py.

    python -m tests.support.registry_writer ROOT NAME WORKDIR --writers N [--versions K] [--size BYTES]

ROOT is a path or an s3://bucket/prefix URL (its endpoint from FORECAST_S3_ENDPOINT_URL).

The parent imports the registry once (torch comes with it: seconds on two cores) and forks N
writer processes. It writes WORKDIR/pids.json (atomically), and each writer waits for
WORKDIR/go so that they all start together, then publishes K versions (forever when K is 0)
with `Registry.publish`, appending each version it got to WORKDIR/published-<i>. Every version
carries a tag (writer, sequence) in its manifest and payloads derived from that tag, so a
checker can tell whether a manifest describes its own files (`check_version`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from forecast.config.training import TrainingConfig
from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.intervals import Calibration
from forecast.registry.manifest import REPORT_FILE, WEIGHTS_FILE, DataFingerprint, Manifest, Provenance
from forecast.registry.store import Registry, open_registry

GO_TIMEOUT_S = 60.0
SMALL_NETWORK = NetworkConfig(arch="gru", input_size=8, horizon=4, hidden_size=4)
SMALL_CHANNELS = 1  # the value alone: no calendar features


def make_manifest(name: str, version: int, digests: dict[str, str], tag: str = "") -> Manifest:
    """A valid manifest for the small GRU above; `tag` lands in data.source."""
    now = datetime.now(UTC)
    return Manifest(
        name=name,
        version=version,
        created_at=now,
        training=TrainingConfig(network=SMALL_NETWORK, features=[]),
        freq="h",
        features=[],
        scaling=ScalingParams(mode="window"),
        season_length=24,
        mase_period=24,
        data=DataFingerprint(
            sha256="0" * 64, source=tag, n_series=1, n_points=100, first_timestamp=now, last_timestamp=now
        ),
        metrics={},
        intervals=Calibration(levels=[], quantiles=[], n_windows=0),
        epochs_run=0,
        best_epoch=0,
        timings={},
        provenance=Provenance(forecast="test", torch="none", python=sys.version.split()[0], device="cpu"),
        files=digests,
    )


def tagged_files(tag: str, size: int) -> dict[str, bytes]:
    """Payloads that only this tag produces."""
    block = hashlib.sha256(tag.encode()).digest()
    return {
        WEIGHTS_FILE: (block * (size // len(block) + 1))[:size],
        REPORT_FILE: json.dumps({"tag": tag}).encode(),
    }


def check_version(registry: Registry, name: str, version: int, size: int) -> str:
    """Fails unless the version's manifest validates, every file passes its sha256 and the files
    are the ones its own writer produced. Returns the version's tag."""
    manifest = registry.manifest(name, version)
    assert manifest.version == version, f"version {version} holds a manifest for {manifest.version}"
    tag = manifest.data.source
    expected = tagged_files(tag, size)
    assert set(manifest.files) == set(expected), manifest.files
    on_disk = set(registry.storage.files(f"{name}/versions/{version}"))
    assert on_disk == {*expected, "manifest.json"}, on_disk
    for filename, payload in expected.items():
        assert registry.read_file(name, version, filename, manifest) == payload, (version, filename)
    return tag


def run_writer(registry: Registry, name: str, workdir: Path, index: int, versions: int, size: int) -> None:
    deadline = time.monotonic() + GO_TIMEOUT_S
    while not (workdir / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no go signal")
        time.sleep(0.001)
    log = open(workdir / f"published-{index}", "a")  # noqa: SIM115 (lives as long as the writer)
    sequence = 0
    while versions == 0 or sequence < versions:
        tag = f"writer-{index}-{sequence}"
        files = tagged_files(tag, size)
        version = registry.publish(name, files, make_manifest(name, 0, {}, tag)).version
        log.write(f"{version}\n")
        log.flush()
        sequence += 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("name")
    parser.add_argument("workdir")
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--versions", type=int, default=0, help="per writer; 0 = until killed")
    parser.add_argument("--size", type=int, default=1 << 20, help="bytes of model.safetensors")
    args = parser.parse_args()
    registry, workdir = open_registry(args.root), Path(args.workdir)
    children = []
    for index in range(args.writers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                run_writer(registry, args.name, workdir, index, args.versions, args.size)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        children.append(pid)
    temporary = workdir / "pids.json.tmp"
    temporary.write_text(json.dumps(children))
    os.replace(temporary, workdir / "pids.json")
    statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    print(json.dumps(statuses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
