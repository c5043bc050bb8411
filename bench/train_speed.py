"""Training speed and memory: windows per second and peak RSS, ours against a plain torch loop
of the same network measured in the same run, on ETTh1 and on synthetic data up to 10 million
points (10,000 series x 1,000).

"Plain torch loop" is how such a model is usually trained: every window materialised up front
(`unfold`), a shuffled DataLoader over a TensorDataset, batch 128, point by point. Ours gathers
each batch by index arithmetic from the stored series (forecast.series.windows) and runs
forecast.training.loop.fit, with the point-wise encoder and with the segment encoder (24 points
per recurrent step, the default for hourly data).
Both count training windows per second of wall time with validation included.

Each measurement runs in its own child process so that its peak RSS is its own.

    python bench/train_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine
from forecast.config.training import TrainingConfig
from forecast.model.config import InputLayout, NetworkConfig, ScalingParams
from forecast.model.encoding import RawWindows, encode
from forecast.model.network import Forecaster
from forecast.model.scaling import to_scaled
from forecast.series.dataset import Dataset, Series
from forecast.series.features import default_features, feature_width
from forecast.series.tables import BUNDLED_SETS
from forecast.series.windows import SeriesStore, block_origins, build_store, gather, split_blocks
from forecast.training.loop import FitData, Objective, fit

INPUT_SIZE, HORIZON = 168, 24
# NeuralForecast's LSTM anchor: 2 layers x 128, windows batch 128 (about 250 windows/s here).
NETWORK = {"hidden_size": 128, "num_layers": 2}
ANCHORS = {"neuralforecast_lstm_2x128_batch128": 250.0, "darts_blockrnn_lstm_1x128_batch32": 700.0}


def ett_dataset() -> Dataset:
    frame = pd.read_csv(BUNDLED_SETS["etth1"]).iloc[:14_400]
    stamps = pd.DatetimeIndex(pd.to_datetime(frame["date"]))
    return Dataset([Series("OT", stamps, frame["OT"].to_numpy(np.float64))], freq="h", source="etth1")


def synthetic_dataset(n_series: int, length: int) -> Dataset:
    rng = np.random.default_rng(0)
    stamps = pd.date_range("2020-01-01", periods=length, freq="h")
    steps = np.arange(length)
    series = []
    for index in range(n_series):
        values = 10 + np.sin(2 * np.pi * steps / 24 + index) + rng.normal(0, 0.3, length).cumsum() * 0.05
        series.append(Series(f"s{index}", stamps, values))
    return Dataset(series, freq="h", source="synthetic")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _windows(dataset: Dataset) -> tuple[list[str], SeriesStore, np.ndarray, np.ndarray]:
    """Calendar features, the store, training origins and 2,048 validation origins: the same
    windows for both loops."""
    features = default_features(dataset.freq)
    store = build_store(dataset, features)
    blocks = split_blocks(store, input_size=INPUT_SIZE, horizon=HORIZON, val_size=HORIZON, test_size=HORIZON)
    train = block_origins(store, blocks, "train", input_size=INPUT_SIZE, horizon=HORIZON)
    validation = block_origins(store, blocks, "validation", input_size=INPUT_SIZE, horizon=HORIZON)[:2048]
    return features, store, train, validation


def network_config(arch: str) -> NetworkConfig:
    return NetworkConfig.model_validate({"arch": arch, "input_size": INPUT_SIZE, "horizon": HORIZON, **NETWORK})


def channels(features: list[str]) -> InputLayout:
    """The scaled value plus a sine and a cosine per calendar feature (no covariates)."""
    return InputLayout(calendar=feature_width(features))


def run_ours(
    dataset: Dataset, arch: str, windows: int, batch_size: int, epochs: int, segment_length: int = 1
) -> dict[str, Any]:
    features, store, train, validation = _windows(dataset)
    config = TrainingConfig.model_validate(
        {
            "arch": arch,
            "input_size": INPUT_SIZE,
            "horizon": HORIZON,
            "max_epochs": epochs,
            "patience": epochs,
            "batch_size": batch_size,
            "windows_per_epoch": windows,
            "device": "cpu",
            "segment_length": segment_length,
            "anchor_period": 24,
            **NETWORK,
        }
    )
    objective = Objective(config.loss, ScalingParams(mode="window"))
    started = time.perf_counter()
    data = FitData(store, train, validation, channels(features), objective)
    result = fit(data, config, torch.device("cpu"), progress=False)
    seconds = time.perf_counter() - started
    trained = min(windows, len(train)) * len(result.epochs)
    return {
        "windows_per_s": trained / seconds,
        "windows": trained,
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "train_windows_available": len(train),
    }


def run_plain(dataset: Dataset, arch: str, windows: int, batch_size: int, epochs: int) -> dict[str, Any]:
    """The usual loop: materialised windows, DataLoader, the same network (zero-init head)."""
    features, store, train, validation = _windows(dataset)
    rng = np.random.default_rng(0)
    chosen = np.sort(rng.choice(train, min(windows, len(train)), replace=False))
    params = ScalingParams(mode="window")

    def materialise(origins: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        batch = gather(store, origins, input_size=INPUT_SIZE, horizon=HORIZON)
        encoded = encode(RawWindows.without_covariates(batch.history, batch.features), params)
        return encoded.inputs.clone(), to_scaled(batch.target, encoded.loc, encoded.spread)

    torch.manual_seed(0)
    network = Forecaster(network_config(arch), channels(features))
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    started = time.perf_counter()
    inputs, targets = materialise(chosen)  # (W, L, F) all at once, as a TensorDataset needs
    val_inputs, val_targets = materialise(validation)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(inputs, targets), batch_size=batch_size, shuffle=True
    )
    for _ in range(epochs):
        network.train()
        for x, y in loader:
            loss = network.loss(x, y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
        network.eval()
        with torch.no_grad():
            for start in range(0, len(val_inputs), batch_size):
                network.loss(val_inputs[start : start + batch_size], val_targets[start : start + batch_size])
    seconds = time.perf_counter() - started
    return {
        "windows_per_s": len(chosen) * epochs / seconds,
        "windows": len(chosen) * epochs,
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "materialised_mb": (inputs.nbytes + targets.nbytes) / 2**20,
    }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh process; returns its JSON result."""
    output = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def child_main(spec: dict[str, Any]) -> None:
    dataset = ett_dataset() if spec["data"] == "etth1" else synthetic_dataset(spec["n_series"], spec["length"])
    baseline_rss = _peak_rss_mb()
    if spec["loop"] == "ours":
        result = run_ours(
            dataset, spec["arch"], spec["windows"], spec["batch_size"], spec["epochs"], spec.get("segment_length", 1)
        )
    else:
        result = run_plain(dataset, spec["arch"], spec["windows"], spec["batch_size"], spec["epochs"])
    result["rss_before_training_mb"] = baseline_rss
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    windows = 2048 if args.quick else 8192
    speed = []
    for arch in ("lstm", "gru"):
        row: dict[str, Any] = {
            "arch": arch,
            "data": "ETTh1 (14,400 rows)",
            "network": NETWORK,
            "input_size": INPUT_SIZE,
            "horizon": HORIZON,
        }
        row["plain_torch_batch128"] = child(
            {"data": "etth1", "loop": "plain", "arch": arch, "windows": windows, "batch_size": 128, "epochs": 1}
        )
        for segment_length, label in ((1, "pointwise"), (24, "segment24")):
            for batch_size in (128, 256):
                row[f"ours_{label}_batch{batch_size}"] = child(
                    {
                        "data": "etth1",
                        "loop": "ours",
                        "arch": arch,
                        "windows": windows * segment_length,
                        "batch_size": batch_size,
                        "epochs": 1,
                        "segment_length": segment_length,
                    }
                )
        plain = row["plain_torch_batch128"]["windows_per_s"]
        ours = [key for key in row if key.startswith("ours_")]
        row["speedup_vs_plain"] = {key: row[key]["windows_per_s"] / plain for key in ours}
        row["speedup_vs_neuralforecast"] = {
            key: row[key]["windows_per_s"] / ANCHORS["neuralforecast_lstm_2x128_batch128"] for key in ours
        }
        speed.append(row)
        print(row, file=sys.stderr)
    memory = []
    sizes = [(1_000, 1_000), (3_000, 1_000), (10_000, 1_000)] if not args.quick else [(1_000, 1_000), (3_000, 1_000)]
    for n_series, length in sizes:
        spec = {
            "data": "synthetic",
            "n_series": n_series,
            "length": length,
            "loop": "ours",
            "arch": "lstm",
            "windows": 4096,
            "batch_size": 256,
            "epochs": 1,
        }
        result = child(spec)
        points = n_series * length
        result.update(points=points, materialised_windows_would_need_mb=points * INPUT_SIZE * 5 * 4 / 2**20)
        memory.append(result)
        print(result, file=sys.stderr)
    emit(
        "train_speed_quick" if args.quick else "train_speed",
        {"machine": machine(), "anchors_windows_per_s": ANCHORS, "speed": speed, "memory": memory},
    )


if __name__ == "__main__":
    main()
