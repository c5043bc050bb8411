"""The GPU check, in one call on a machine with CUDA: the `gpu` tests, then the serving
benchmark with the models on the GPU (FORECAST_DEVICE=cuda) at 1 and `--workers` serving
processes (default: one per usable core), the raw forward ceiling on CUDA at several batch
sizes, training on torchrun with a process per GPU, and the backtest benchmark with the model on
the GPU. Prints one JSON document.

Device time is scarce, so every section runs under its own time limit, a failing section is
recorded rather than fatal, and with `--out DIR` the report so far is rewritten after each
section (a run cut short still leaves what it measured).

    python bench/gpu_check.py [--duration 5] [--workers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.runtime.cores import usable_cores
from bench.common import emit, machine
from bench.serve import HORIZON, MODELS, ModelCeiling
from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.network import Forecaster
from forecast.model.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]


def gpu_tests(log: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rA", "tests/test_gpu.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if log is not None:
        log.write_text(run.stdout + run.stderr)
    lines = run.stdout.strip().splitlines()
    return {
        "exit_code": run.returncode,
        "results": [line for line in lines if line.startswith(("PASSED", "FAILED", "ERROR"))],
        "summary": lines[-1:],
        "tail": "" if run.returncode == 0 else (run.stdout + run.stderr)[-3000:],
        "seconds": time.perf_counter() - started,
    }


def serve_on_cuda(duration: float, workers: int, log: Path | None) -> dict[str, Any]:
    serve = subprocess.run(
        # two interleaved rounds, not three: the section has to fit the lent device's minutes
        [
            sys.executable,
            "bench/serve.py",
            "--quick",
            "--duration",
            str(duration),
            "--rounds",
            "2",
            "--workers",
            str(workers),
        ],
        # two more servers per model than before (the N-worker runs): a longer limit
        cwd=ROOT,
        env={**os.environ, "FORECAST_DEVICE": "cuda"},
        capture_output=True,
        text=True,
        timeout=450,
    )
    if log is not None:
        log.write_text(serve.stderr)
    if serve.returncode != 0:
        return {"error": serve.stderr[-3000:]}
    result: dict[str, Any] = json.loads(serve.stdout)
    return result


def torchrun_on_cuda(log: Path | None) -> dict[str, Any]:
    """The contract's `torchrun --nproc-per-node N -m forecast.cli train` on the GPUs, one process per
    GPU (nccl between them; with one GPU torchrun starts one process and no process group), beside
    one plain process (bench/distributed.py --quick)."""
    nproc = torch.cuda.device_count()
    run = subprocess.run(
        [
            sys.executable,
            "bench/distributed.py",
            "--device",
            "cuda",
            "--nproc",
            str(nproc),
            "--seeds",
            "1",
            "--quick",
            "--name",
            "distributed_cuda",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if log is not None:
        log.write_text(run.stderr)
    if run.returncode != 0:
        return {"error": run.stderr[-3000:]}
    result: dict[str, Any] = json.loads(run.stdout)
    result["nccl_used"] = nproc > 1
    return result


def backtest_on_cuda(log: Path | None) -> dict[str, Any]:
    """bench/backtest.py with the served model on the GPU: POST /v1/backtest of M4 Hourly's 414
    series x 48 origins beside the loop of single forecasts (every 20th window timed and
    extrapolated, to fit the device's minutes); the peer is left out (its CPU figure is in
    docs/benchmarks.md)."""
    run = subprocess.run(
        [sys.executable, "bench/backtest.py", "--no-peer", "--loop-every", "20"],
        cwd=ROOT,
        env={**os.environ, "FORECAST_DEVICE": "cuda"},
        capture_output=True,
        text=True,
        timeout=420,
    )
    if log is not None:
        log.write_text(run.stderr)
    if run.returncode != 0:
        return {"error": run.stderr[-3000:]}
    result: dict[str, Any] = json.loads(run.stdout)
    return {
        key: result[key]
        for key in ("machine", "data", "model", "product", "loop", "hostile", "ratios")
        if key in result
    }


def cuda_forward_ceiling() -> dict[str, dict[int, float]]:
    """Series/s of the raw forward on CUDA for the serving benchmark's two shapes (untrained
    weights: the cost does not depend on them)."""
    result = {}
    for name, shape in MODELS.items():
        config = NetworkConfig.model_validate({"arch": "lstm", "horizon": HORIZON, **shape})
        ceiling = ModelCeiling(Predictor(Forecaster(config, 5), ScalingParams(mode="window"), torch.device("cuda")))
        result[name] = {batch: ceiling.series_per_s(batch) for batch in (1, 8, 64, 256, 1024)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=3.0, help="seconds per load point (the whole check fits one 10-minute call)"
    )
    parser.add_argument("--workers", type=int, default=usable_cores(), help="serving processes of the N-worker runs")
    parser.add_argument("--out", type=Path, help="folder that receives the report after every section")
    parser.add_argument("--only", help="comma-separated sections to run (default: all)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_check.py needs a CUDA device")
    report: dict[str, Any] = {"machine": machine()}
    sections: dict[str, Callable[[], Any]] = {
        "gpu_tests": lambda: gpu_tests(args.out / "gpu_tests.log" if args.out else None),
        "cuda_forward_series_per_s": cuda_forward_ceiling,
        "serve_on_cuda": lambda: serve_on_cuda(
            args.duration, args.workers, args.out / "serve.log" if args.out else None
        ),
        "torchrun_on_cuda": lambda: torchrun_on_cuda(args.out / "torchrun.log" if args.out else None),
        "backtest_on_cuda": lambda: backtest_on_cuda(args.out / "backtest.log" if args.out else None),
    }
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    chosen = set(args.only.split(",")) if args.only else set(sections)
    for name, section in sections.items():
        if name not in chosen:
            continue
        started = time.perf_counter()
        try:
            report[name] = section()
        except Exception as error:  # recorded, so that the other sections still run
            report[name] = {"error": f"{type(error).__name__}: {error}"}
        print(f"{name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        if args.out is not None:
            (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    emit("gpu_check", report)


if __name__ == "__main__":
    main()
