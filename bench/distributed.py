"""Data-parallel training against one process, in one run: the real `forecast train` command in
one process and under `torchrun --nproc-per-node N --standalone -m forecast.cli train`, on the
same synthetic hourly series and seeds, into temporary registries. Prints the test MASE of each
(read back from the manifest), the seed-to-seed spread of the single process (the noise the
distributed result is judged against), and wall and training times.

Threads are shared fairly: the single process gets one intra-op thread per core (or
--single-threads), each of the N processes that many / N (at least one); on the GPU each process
has a device of its own.

    python bench/distributed.py [--nproc 2] [--seeds 3] [--quick] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine

ROOT = Path(__file__).resolve().parents[1]
# The tests' small model (tests/conftest.py SMALL_MODEL_ARGS) without its seed, device and epochs.
MODEL_ARGS = (
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
    "--quiet",
)
TIMEOUT_S = 1800


def seasonal_csv(path: Path, n_series: int, n_points: int) -> Path:
    """Hourly series with a daily cycle, a slow trend and AR(1) noise, as the tests' fixture."""
    rng = np.random.default_rng(0)
    frames = []
    for index in range(n_series):
        steps = np.arange(n_points)
        noise = np.zeros(n_points)
        for t in range(1, n_points):
            noise[t] = 0.9 * noise[t - 1] + rng.normal(0.0, 0.3)
        values = 10.0 + 2 * index + 3.0 * np.sin(2 * np.pi * steps / 24 + index) + 0.03 * steps + noise
        stamps = pd.date_range("2024-01-01", periods=n_points, freq="h")
        frames.append(pd.DataFrame({"series_id": f"s{index}", "timestamp": stamps, "value": values}))
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


def train_once(data: Path, registry: Path, nproc: int | None, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One training: the plain command (nproc None), or torchrun's line with nproc processes (with
    one, torchrun starts a single process and no process group)."""
    bin_dir = Path(sys.executable).parent
    command = (
        [str(bin_dir / "forecast")]
        if nproc is None
        else [
            str(bin_dir / "torchrun"),
            "--nproc-per-node",
            str(nproc),
            "--standalone",
            "-m",
            "forecast.cli",
        ]
    )
    launcher, nproc = ("forecast", 1) if nproc is None else ("torchrun", nproc)
    train = [
        "train",
        "--data",
        str(data),
        "--name",
        "bench",
        "--registry",
        str(registry),
        *MODEL_ARGS,
        "--seed",
        str(seed),
        "--max-epochs",
        str(args.max_epochs),
        "--device",
        args.device,
    ]
    cores = args.single_threads or os.cpu_count() or 1
    threads = 1 if args.device == "cuda" else max(1, cores // nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.pop("FORECAST_REGISTRY", None)
    started = time.perf_counter()
    run = subprocess.run([*command, *train], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"{nproc} process(es), seed {seed}: exit {run.returncode}\n{run.stderr[-3000:]}")
    manifest = json.loads((registry / "bench" / "versions" / "1" / "manifest.json").read_text())
    test = manifest["metrics"]["test"]
    return {
        "launcher": launcher,
        "processes": nproc,
        "seed": seed,
        "threads_per_process": threads,
        "test_mase": test["model"]["mase"],
        "seasonal_naive_mase": test["seasonal_naive"]["mase"],
        "epochs_run": manifest["epochs_run"],
        "wall_s": round(seconds, 2),
        "train_s": manifest["timings"]["train_s"],
        "train_windows_per_s": manifest["timings"]["train_windows_per_s"],
    }


def summary(runs: list[dict[str, Any]], nproc: int) -> dict[str, Any]:
    def of(launcher: str, key: str) -> list[float]:
        return [run[key] for run in runs if run["launcher"] == launcher]

    single, distributed = of("forecast", "test_mase"), of("torchrun", "test_mase")
    differences = [abs(d - s) / s for s, d in zip(single, distributed, strict=True)]
    return {
        "test_mase_1_process_mean": float(np.mean(single)),
        f"test_mase_{nproc}_processes_mean": float(np.mean(distributed)),
        "relative_difference_same_seed_max": max(differences),
        "single_process_seed_spread": max(single) - min(single),
        "single_process_seed_spread_relative": (max(single) - min(single)) / float(np.mean(single)),
        "train_s_1_process_mean": float(np.mean(of("forecast", "train_s"))),
        f"train_s_{nproc}_processes_mean": float(np.mean(of("torchrun", "train_s"))),
        "wall_s_1_process_mean": float(np.mean(of("forecast", "wall_s"))),
        f"wall_s_{nproc}_processes_mean": float(np.mean(of("torchrun", "wall_s"))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1, each trained both ways")
    parser.add_argument("--quick", action="store_true", help="the tests' 3 x 400 points, 6 epochs")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--single-threads", type=int, help="intra-op threads of the single process (default: one per core)"
    )
    parser.add_argument("--name", default="distributed", help="result file name under bench/results")
    args = parser.parse_args()
    n_series, n_points = (3, 400) if args.quick else (24, 1500)
    args.max_epochs = 6 if args.quick else 10
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        data = seasonal_csv(folder / "series.csv", n_series, n_points)
        for seed in range(args.seeds):
            for nproc in (None, args.nproc):
                runs.append(train_once(data, folder / f"registry-{nproc}-{seed}", nproc, seed, args))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    emit(
        args.name,
        {
            "machine": machine(),
            "data": {"series": n_series, "points_per_series": n_points, "freq": "h"},
            "model_args": [*MODEL_ARGS, "--max-epochs", str(args.max_epochs), "--device", args.device],
            "runs": runs,
            "summary": summary(runs, args.nproc),
        },
    )


if __name__ == "__main__":
    main()
