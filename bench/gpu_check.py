"""The GPU check, in one call on a machine with CUDA: the `gpu` tests, then the serving
benchmark with the models on the GPU (FORECAST_DEVICE=cuda), and the raw forward ceiling on
CUDA at several batch sizes. Prints one JSON document.

    python bench/gpu_check.py [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine
from forecast.networks import Forecaster, NetworkConfig
from forecast.predictor import Predictor
from forecast.scaling import ScalingParams

ROOT = Path(__file__).resolve().parents[1]


def gpu_tests() -> dict[str, Any]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    return {
        "exit_code": run.returncode,
        "summary": run.stdout.strip().splitlines()[-1:],
        "seconds": time.perf_counter() - started,
    }


def cuda_forward_ceiling() -> dict[str, dict[int, float]]:
    """Series/s of the raw forward on CUDA for the two serving benchmark shapes."""
    device = torch.device("cuda")
    result = {}
    for name, (hidden, layers, input_size) in {"small": (64, 1, 168), "large": (256, 2, 336)}.items():
        config = NetworkConfig(
            arch="lstm", input_size=input_size, horizon=24, n_features=5, hidden_size=hidden, num_layers=layers
        )
        predictor = Predictor(Forecaster(config), ScalingParams(mode="window"), device)
        rates = {}
        for batch in (1, 8, 64, 256, 1024):
            history = torch.randn(batch, input_size).add_(30.0).pin_memory()
            features = torch.randn(batch, input_size, 4).pin_memory()
            with torch.inference_mode():
                for _ in range(3):
                    predictor.forward_raw(history, features)
                torch.cuda.synchronize()
                runs, started = 0, time.perf_counter()
                while time.perf_counter() - started < 1.0:
                    predictor.forward_raw(history, features)[0].cpu()
                    runs += 1
            rates[batch] = runs * batch / (time.perf_counter() - started)
        result[name] = rates
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_check.py needs a CUDA device")
    report: dict[str, Any] = {
        "machine": machine(),
        "gpu_tests": gpu_tests(),
        "cuda_forward_series_per_s": cuda_forward_ceiling(),
    }
    serve = subprocess.run(
        [sys.executable, "bench/serve.py", "--quick", "--duration", str(args.duration)],
        cwd=ROOT, env={**os.environ, "FORECAST_DEVICE": "cuda"}, capture_output=True, text=True,
    )  # fmt: skip
    report["serve_on_cuda"] = json.loads(serve.stdout) if serve.returncode == 0 else {"error": serve.stderr[-2000:]}
    emit("gpu_check", report)


if __name__ == "__main__":
    main()
