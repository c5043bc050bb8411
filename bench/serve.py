"""Serving benchmark: requests/s, series/s and p50/p99 latency of the real server under wrk.

For two models (small: LSTM 1 x 64, input 168; large: LSTM 2 x 256, input 336; horizon 24),
at 1, 16, 64 and 256 concurrent connections, with 1 and 32 series per request, it runs
  - batching on (the defaults) and off (FORECAST_MAX_BATCH_SIZE=1),
  - the HTTP ceiling: the same server, route, parsing, validation, batcher and response,
    with the network replaced by a no-op (bench/noop_server.py): what the server
    serves when the model costs nothing,
  - the model ceiling: the raw batched forward of the same network, in this process, at the
    mean batch size the batching server formed, measured right after each batching run,
  - the worker dimension: the batching server and the HTTP ceiling again with `--workers N`
    serving processes on one port (default: one per usable core), beside their 1-worker runs;
    the batching server twice, each worker running its own forward passes (per_worker) and all
    of them sending theirs to one inference process (per_device), which merges them.
All ratios in the output compare numbers measured in this one run, on this machine: the three
servers run side by side and each load point is measured on them in turn; the 64-connection
points the bars read are measured in `--rounds` interleaved rounds and the median run is kept.

    python bench/serve.py [--duration 5] [--rounds 3] [--quick] [--sweep] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.runtime.cores import usable_cores
from bench.common import emit, machine
from forecast.config.training import TrainingConfig
from forecast.model.devices import resolve_device
from forecast.model.encoding import RawWindows
from forecast.model.predictor import Predictor
from forecast.registry.store import Registry
from forecast.registry.weights import load_predictor
from forecast.series.tables import BUNDLED_SETS
from forecast.training.job import run_training

# The serving anchors' shapes: one point-wise LSTM each (not the training defaults' three
# segment-wise members), so that the figures stay comparable from run to run.
SHAPE_PINS = {"ensemble": 1, "segment_length": 1, "anchor_period": 1}
MODELS = {
    "small": {"hidden_size": 64, "num_layers": 1, "input_size": 168, **SHAPE_PINS},
    "large": {"hidden_size": 256, "num_layers": 2, "input_size": 336, **SHAPE_PINS},
}
HORIZON = 24
CONCURRENCY = (1, 16, 64, 256)
BAR_CONNECTIONS = 64  # the load the bars are read at
# mode -> (the server's module, its FORECAST_* settings)
MODES: dict[str, tuple[str, dict[str, str]]] = {
    "http_ceiling": ("bench.noop_server", {}),  # the network replaced by a no-op
    "batching": ("forecast.cli", {}),  # the defaults
    "unbatched": ("forecast.cli", {"max_batch_size": "1"}),
}

SERIES_PER_REQUEST = (1, 32)
LUA = Path(__file__).with_name("post.lua")


def worker_modes(workers: int) -> dict[str, tuple[str, dict[str, str]]]:
    """The batching server and the HTTP ceiling with `workers` processes (none when 1: the same)."""
    if workers <= 1:
        return {}
    return {
        f"http_ceiling_{workers}_workers": ("bench.noop_server", {"workers": str(workers)}),
        f"batching_{workers}_workers": ("forecast.cli", {"workers": str(workers), "inference": "per_worker"}),
        # the workers' batches merged in one inference process per device (api/runtime/plan.py)
        f"batching_{workers}_workers_per_device": (
            "forecast.cli",
            {"workers": str(workers), "inference": "per_device"},
        ),
    }


def short_training(model: str) -> dict[str, Any]:
    """The training settings of one of `MODELS` for the serving benchmarks: serving speed does not
    depend on accuracy, so one short epoch."""
    return {
        "arch": "lstm",
        "horizon": HORIZON,
        "max_epochs": 1,
        "windows_per_epoch": 1024,
        "val_size": HORIZON * 4,
        "test_size": HORIZON * 4,
        "device": "cpu",
        **MODELS[model],
    }


def train_models(registry: Registry, data: Path) -> None:
    for name in MODELS:
        config = TrainingConfig.model_validate(short_training(name))
        run_training(data, name, config, registry, progress=False, force=True)  # one short epoch: past the gate


def request_body(input_size: int, series_count: int, values: np.ndarray) -> str:
    series = [
        {
            "id": f"s{i}",
            "start": "2017-01-01T00:00:00",
            "freq": "h",
            "values": values[i : i + input_size].round(3).tolist(),
        }
        for i in range(series_count)
    ]
    return httpx.Request("POST", "http://x", json={"model": "m", "series": series}).content.decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, registry: Path, module: str = "forecast.cli", **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "FORECAST_REGISTRY": str(registry), "FORECAST_SHUTDOWN_GRACE_S": "0"}
        # One process unless a mode asks for more (the product's default is one per core), so
        # that the 1-worker modes stay what they were and bench/soak.py's memory is one process's.
        settings = {"workers": "1", **settings}
        env.update({f"FORECAST_{k.upper()}": v for k, v in settings.items()})
        # stderr (the JSON access log too) goes to a file, so a server that fails to start says why.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *(["serve"] if module == "forecast.cli" else []), "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            cwd=Path(__file__).resolve().parents[1],
        )
        deadline = time.monotonic() + 120
        workers = int(settings.get("workers", "1"))
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                # Any worker answers readiness; measuring waits until every worker has started.
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200 and self._started() >= workers:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.process.kill()
        self.log.seek(0)
        tail = self.log.read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"server did not become ready; its stderr ends with:\n{tail}")

    def _started(self) -> int:
        """Server processes whose app has started (uvicorn logs it once per worker)."""
        self.log.seek(0)
        return self.log.read().count(b"Application startup complete")

    def model_metrics(self, model: str) -> dict[str, float]:
        """One model's queue depth and batch-size histogram (sum, count), from /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=120).text
        found = {}
        metrics = (
            "forecast_queue_depth",
            "forecast_batch_size_sum",
            "forecast_batch_size_count",
            "forecast_device_batch_size_sum",
            "forecast_device_batch_size_count",
        )
        for metric in metrics:
            match = re.search(rf'{metric}{{model="{model}",version="1"}} ([0-9.e+]+)', text)
            found[metric] = float(match.group(1)) if match else 0.0
        return found

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log.close()


# wrk writes durations with the unit that suits them: "950.00us", "12.5ms", "1.2s", "10.00m".
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_DURATION = r"[0-9.]+(?:us|ms|s|m|h)"


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(url: str, body: Path, connections: int, duration_s: float) -> dict[str, Any]:
    output = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--latency",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            f"{url}/v1/forecast",
        ],
        env={**os.environ, "WRK_BODY": str(body)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    latency = dict(re.findall(rf"^\s+(50|99)%\s+({_DURATION})", output, flags=re.M))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    total, took = re.search(rf"(\d+) requests in ({_DURATION})", output).groups()  # type: ignore[union-attr]
    seconds = _ms(took) / 1e3
    refused = int(failed.group(1)) if failed else 0
    return {
        # only answered forecasts count: a fast 503 is not throughput
        "requests_per_s": (int(total) - refused) / float(seconds),
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "failed": refused,
        "socket_errors": errors.group(1) if errors else "",
    }


def settle(server: Server, model: str, limit_s: float = 60.0) -> dict[str, float]:
    """The model's metrics once its queue is empty: requests that wrk abandoned at the end of a
    run must not take CPU from the next measurement (another server may be measured next)."""
    deadline = time.monotonic() + limit_s
    metrics = server.model_metrics(model)
    while metrics["forecast_queue_depth"] > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        metrics = server.model_metrics(model)
    return metrics


def measure(
    server: Server, model: str, body: Path, series_count: int, connections: int, duration_s: float
) -> dict[str, Any]:
    wrk(server.url, body, connections, 1.0)  # warm-up, not recorded
    before = settle(server, model)
    result = wrk(server.url, body, connections, duration_s)
    after = settle(server, model)

    def mean(prefix: str) -> float | None:
        batches = after[f"{prefix}_count"] - before[f"{prefix}_count"]
        return (after[f"{prefix}_sum"] - before[f"{prefix}_sum"]) / batches if batches else None

    workers_mean, device_mean = mean("forecast_batch_size"), mean("forecast_device_batch_size")
    result.update(
        series_per_request=series_count,
        connections=connections,
        series_per_s=result["requests_per_s"] * series_count,
        # the forward pass's batch: the inference process's merged one when there is one
        mean_batch_size=device_mean if device_mean is not None else workers_mean,
    )
    if device_mean is not None:
        result["mean_worker_batch_size"] = workers_mean
    return result


def load_curves(
    servers: dict[str, Server],
    model: str,
    bodies: dict[int, Path],
    duration_s: float,
    concurrency: tuple[int, ...],
    rounds: int,
    ceiling: ModelCeiling,
) -> dict[str, list[dict[str, Any]]]:
    """Every load point on every server (the modes), the modes interleaved so that the ratios
    the bars read compare measurements taken seconds apart: the host's speed drifts by more
    than the bars' margins over the minutes a run takes. The raw forward at the batch size a
    batching run formed is measured right after that run. The points the bars read (64
    connections) are measured `rounds` times and the median run is kept."""
    curves: dict[str, list[dict[str, Any]]] = {mode: [] for mode in servers}
    for series_count, body in bodies.items():
        for connections in concurrency:
            repeats = rounds if connections == BAR_CONNECTIONS else 1
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in servers}
            for _ in range(repeats):
                for mode, server in servers.items():
                    result = measure(server, model, body, series_count, connections, duration_s)
                    if mode.startswith("batching"):
                        result["model_ceiling_series_per_s"] = ceiling.series_per_s(
                            round(result["mean_batch_size"] or 1)
                        )
                    runs[mode].append(result)
            for mode, results in runs.items():
                ordered = sorted(results, key=lambda r: r["requests_per_s"])
                median = dict(ordered[len(ordered) // 2])
                median["rounds_requests_per_s"] = [r["requests_per_s"] for r in results]
                if mode.startswith("batching"):
                    median["rounds_model_ceiling_series_per_s"] = [r["model_ceiling_series_per_s"] for r in results]
                curves[mode].append(median)
                print(model, mode, median, file=sys.stderr)
    return curves


class ModelCeiling:
    """The raw forward pass of a network alone, in this process, with the server's threads. On
    CUDA each pass includes the copies both ways."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @classmethod
    def served(cls, registry: Registry, name: str) -> ModelCeiling:
        """Version 1 of a registry's model on the device the server used (FORECAST_DEVICE)."""
        device = resolve_device(os.environ.get("FORECAST_DEVICE", "cpu"))
        return cls(load_predictor(registry, name, 1, device).predictor)

    def series_per_s(self, batch: int, seconds: float = 1.0) -> float:
        config = self.predictor.config
        history = torch.randn(batch, config.input_size).add_(30.0)
        known = config.horizon if config.horizon_inputs else 0  # steps after the window the network reads
        calendar = torch.randn(batch, config.input_size + known, self.predictor.network.layout.calendar)
        windows = RawWindows.without_covariates(history, calendar)
        if self.predictor.device.type == "cuda":
            windows = windows.pin_memory()
        with torch.inference_mode():
            for _ in range(3):  # warm-up: allocator, cuDNN plans
                self.predictor.forecast_on_device(windows).mean.cpu()
            runs, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                self.predictor.forecast_on_device(windows).mean.cpu()  # .cpu() waits for the device
                runs += 1
        return runs * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load point")
    parser.add_argument("--quick", action="store_true", help="only 64 connections")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved runs of each 64-connection point (median kept)"
    )
    parser.add_argument("--sweep", action="store_true", help="also sweep batch size and wait on the large model")
    parser.add_argument(
        "--workers", type=int, default=usable_cores(), help="serving processes of the N-worker runs (default: cores)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/serve.py needs wrk: apt-get install wrk")
    concurrency = (64,) if args.quick else CONCURRENCY
    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    frame = pd.read_csv(BUNDLED_SETS["etth1"])[["date", "OT"]].iloc[:4000]
    data = workdir / "ett.csv"
    frame.to_csv(data, index=False)
    registry = Registry(workdir / "registry")
    train_models(registry, data)
    values = frame["OT"].to_numpy()
    result: dict[str, Any] = {
        "machine": machine(),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "workers": args.workers,
        "models": {},
    }
    modes = {**MODES, **worker_modes(args.workers)}
    for name, shape in MODELS.items():
        bodies = {}
        for count in SERIES_PER_REQUEST:
            path = workdir / f"{name}-{count}.json"
            path.write_text(
                request_body(shape["input_size"], count, values).replace('"model":"m"', f'"model":"{name}"')
            )
            bodies[count] = path
        # The three servers run side by side, idle but for the one being measured.
        ceiling = ModelCeiling.served(registry, name)
        servers: dict[str, Server] = {}
        try:
            for mode, (module, settings) in modes.items():
                servers[mode] = Server(registry.root, module, **settings)
            curves = load_curves(servers, name, bodies, args.duration, concurrency, args.rounds, ceiling)
        finally:
            for server in servers.values():
                server.stop()
        result["models"][name] = {
            "shape": shape,
            "curves": curves,
            "model_ceiling_series_per_s": {batch: ceiling.series_per_s(batch) for batch in (1, 8, 32, 64)},
        }
    result["bars"] = bars(result["models"])
    if args.workers > 1:
        result["worker_scaling"] = worker_scaling(result["models"], args.workers)
    if args.sweep:
        result["sweep"] = sweep(registry, workdir, values, args.duration)
    shutil.rmtree(workdir, ignore_errors=True)
    emit("serve_quick" if args.quick else "serve", result)


def _row(curve: list[dict[str, Any]], series: int, connections: int) -> dict[str, Any]:
    return next(r for r in curve if r["series_per_request"] == series and r["connections"] == connections)


def _rounds(curve: list[dict[str, Any]], series: int) -> np.ndarray:
    return np.asarray(_row(curve, series, BAR_CONNECTIONS)["rounds_requests_per_s"], dtype=float) * series


def _paired(numerator: np.ndarray, denominator: np.ndarray) -> dict[str, Any]:
    """The bar's value is the median over rounds of the ratio within a round (measured seconds
    apart, so the host's drift cancels); the ratio of the medians is kept beside it."""
    per_round = numerator / denominator
    return {
        "value": float(np.median(per_round)),
        "per_round": per_round.tolist(),
        "ratio_of_medians": float(np.median(numerator) / np.median(denominator)),
    }


def bars(models: dict[str, Any]) -> dict[str, Any]:
    large, small = models["large"]["curves"], models["small"]["curves"]
    speedup = _paired(_rounds(large["batching"], 1), _rounds(large["unbatched"], 1))
    small_share = _paired(_rounds(small["batching"], 1), _rounds(small["http_ceiling"], 1))
    many = {}
    for name, model in models.items():
        curves = model["curves"]
        model_ceiling = np.asarray(_row(curves["batching"], 32, BAR_CONNECTIONS)["rounds_model_ceiling_series_per_s"])
        http = _rounds(curves["http_ceiling"], 32)
        share = _paired(_rounds(curves["batching"], 32), np.minimum(http, model_ceiling))
        many[name] = {
            "served_series_per_s": float(np.median(_rounds(curves["batching"], 32))),
            "http_ceiling": float(np.median(http)),
            "model_ceiling": float(np.median(model_ceiling)),
            "share_of_lower_ceiling": share["value"],
            **share,
        }
    return {
        "1_large_64_clients_batching_speedup": {**speedup, "bar": 2.5, "pass": speedup["value"] >= 2.5},
        "2_small_64_clients_share_of_http_ceiling": {**small_share, "bar": 0.7, "pass": small_share["value"] >= 0.7},
        "3_32_series_share_of_lower_ceiling": {
            **many,
            "bar": 0.5,
            "pass": all(m["share_of_lower_ceiling"] >= 0.5 for m in many.values()),
        },
    }


def worker_scaling(models: dict[str, Any], workers: int) -> dict[str, Any]:
    """Served series/s at 1 and `workers` workers for 1 and 32 series per request (64 clients),
    beside the HTTP ceiling at both counts and the one-process model ceiling; the gains are paired
    within rounds, for each inference mode. `share_of_model_ceiling` of 32-series requests (in the
    mode FORECAST_INFERENCE=auto picks on the device: per_device on CUDA) is the GPU check's goal
    (>= 50% for the large model)."""
    scaling: dict[str, Any] = {}
    for name, model in models.items():
        curves = model["curves"]
        rows = {}
        for series in SERIES_PER_REQUEST:
            one, many = _rounds(curves["batching"], series), _rounds(curves[f"batching_{workers}_workers"], series)
            http_one = _rounds(curves["http_ceiling"], series)
            http_many = _rounds(curves[f"http_ceiling_{workers}_workers"], series)
            ceiling = np.asarray(
                _row(curves[f"batching_{workers}_workers"], series, BAR_CONNECTIONS)[
                    "rounds_model_ceiling_series_per_s"
                ]
            )
            shared = _rounds(curves[f"batching_{workers}_workers_per_device"], series)
            shared_ceiling = np.asarray(
                _row(curves[f"batching_{workers}_workers_per_device"], series, BAR_CONNECTIONS)[
                    "rounds_model_ceiling_series_per_s"
                ]
            )
            rows[series] = {
                "served_series_per_s_1_worker": float(np.median(one)),
                f"served_series_per_s_{workers}_workers": float(np.median(many)),
                f"served_series_per_s_{workers}_workers_per_device": float(np.median(shared)),
                "gain": _paired(many, one),
                "gain_per_device": _paired(shared, one),
                "per_device_over_per_worker": _paired(shared, many),
                "http_ceiling_1_worker": float(np.median(http_one)),
                f"http_ceiling_{workers}_workers": float(np.median(http_many)),
                "http_ceiling_gain": _paired(http_many, http_one),
                "model_ceiling": float(np.median(ceiling)),
                "share_of_model_ceiling": _paired(many, ceiling),
                # at the inference process's merged batch, which may exceed max_batch_size
                "model_ceiling_per_device": float(np.median(shared_ceiling)),
                "share_of_model_ceiling_per_device": _paired(shared, shared_ceiling),
            }
        scaling[name] = rows
    return scaling


def sweep(registry: Registry, workdir: Path, values: np.ndarray, duration_s: float) -> list[dict[str, Any]]:
    """Large model, 64 single-series clients: throughput and p99 per batch size and wait."""
    body = workdir / "sweep.json"
    body.write_text(request_body(MODELS["large"]["input_size"], 1, values).replace('"model":"m"', '"model":"large"'))
    rows = []
    for max_batch in (16, 64, 256):
        for wait_ms in (0, 2, 10):
            server = Server(registry.root, max_batch_size=str(max_batch), max_wait_ms=str(wait_ms))
            try:
                wrk(server.url, body, 64, 1.0)
                row = wrk(server.url, body, 64, duration_s)
            finally:
                server.stop()
            row.update(max_batch_size=max_batch, max_wait_ms=wait_ms)
            rows.append(row)
            print("sweep", row, file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
