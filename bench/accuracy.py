"""Accuracy benchmark: ETTh1 (Informer split, target OT, z-scored MSE/MAE) at horizons 24 and
96 for LSTM and GRU, and one global model on M4 Weekly, each beside the naive baselines.

Every model is trained with the real training job (`forecast.job.run_training`) into a
temporary registry and its metrics are read back from the manifest.

    python bench/accuracy.py [--only ett|m4] [--max-epochs N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_DATA, emit, machine
from forecast.model.config import Architecture
from forecast.registry.manifest import Manifest, TrainingConfig
from forecast.registry.store import Registry
from forecast.series.dataset import BUNDLED_SETS
from forecast.training.job import run_training

# Published or protocol anchors (MSE on the z-scored OT series), from the issue.
ETT_ANCHORS = {
    24: {"naive": 0.0343, "seasonal_naive": 0.0458, "informer": 0.098, "lstma": 0.114},
    96: {"naive": 0.0693, "seasonal_naive": 0.0715, "dlinear": 0.056, "patchtst": 0.055},
}
ETT_ROWS, ETT_TRAIN_ROWS, ETT_BLOCK = 14_400, 8_640, 2_880


ETT_ARCHS: tuple[Architecture, ...] = ("lstm", "gru")


def ett_runs(workdir: Path, max_epochs: int) -> list[dict[str, object]]:
    frame = pd.read_csv(BUNDLED_SETS["etth1"])[["date", "OT"]].iloc[:ETT_ROWS]
    data = workdir / "etth1_informer.csv"
    frame.to_csv(data, index=False)
    train = frame["OT"].to_numpy()[:ETT_TRAIN_ROWS]
    mean, std = float(train.mean()), float(train.std())  # population std, as the protocol says
    registry = Registry(workdir / "registry")
    runs: list[dict[str, object]] = []
    for horizon, input_size in ((24, 336), (96, 336)):
        for arch in ETT_ARCHS:
            config = TrainingConfig.model_validate(
                dict(
                    arch=arch,
                    input_size=input_size,
                    horizon=horizon,
                    hidden_size=64,
                    num_layers=1,
                    val_size=ETT_BLOCK,
                    test_size=ETT_BLOCK,
                    max_epochs=max_epochs,
                    patience=4,
                    seed=0,
                    device="cpu",
                )
            )
            started = time.perf_counter()
            outcome = run_training(data, f"ett-{arch}-{horizon}", config, registry, progress=False)
            test = defined(outcome.manifest.metrics["test"])
            runs.append(
                {
                    "dataset": "ETTh1/OT",
                    "arch": arch,
                    "horizon": horizon,
                    "input_size": input_size,
                    "mse": {m: test[m]["mse"] / std**2 for m in ("model", "naive", "seasonal_naive")},
                    "mae": {m: test[m]["mae"] / std for m in ("model", "naive", "seasonal_naive")},
                    "anchors_mse": ETT_ANCHORS[horizon],
                    "beats_naive": test["model"]["mse"] < test["naive"]["mse"],
                    "coverage": outcome.manifest.intervals.coverage,
                    "epochs": outcome.manifest.epochs_run,
                    "best_epoch": outcome.manifest.best_epoch,
                    "seconds": round(time.perf_counter() - started, 1),
                    "z_score": {"mean": mean, "std": std},
                }
            )
            print(runs[-1], file=sys.stderr)
    return runs


def m4_weekly_long(workdir: Path) -> Path:
    """M4 Weekly's train and test rows joined per series, with weekly timestamps added (the
    competition gives none), so the last 13 points of each series are M4's own test set."""
    train = pd.read_csv(SHARED_DATA / "m4" / "m4_weekly_train.csv", index_col=0)
    test = pd.read_csv(SHARED_DATA / "m4" / "m4_weekly_test.csv", index_col=0)
    rows = []
    for series_id in train.index:
        values = np.concatenate([train.loc[series_id].dropna().to_numpy(), test.loc[series_id].dropna().to_numpy()])
        stamps = pd.date_range(end="2018-12-30", periods=len(values), freq="W-SUN")
        rows.append(pd.DataFrame({"series_id": series_id, "timestamp": stamps, "value": values}))
    path = workdir / "m4_weekly_long.csv"
    pd.concat(rows).to_csv(path, index=False)
    return path


def defined(block: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float]]:
    """A block's metrics with none undefined: MASE is None only when every training history is
    constant, which neither ETTh1 nor M4 Weekly has."""
    result = {}
    for method, metrics in block.items():
        missing = [name for name, value in metrics.items() if value is None]
        if missing:
            raise SystemExit(f"{method}: {missing} undefined on this data set")
        result[method] = {name: float(value) for name, value in metrics.items() if value is not None}
    return result


def m4_row(manifest: Manifest, seconds: float) -> dict[str, object]:
    test = defined(manifest.metrics["test"])
    methods = ("model", "naive", "seasonal_naive")
    return {
        "dataset": "M4 Weekly (359 series)",
        "arch": manifest.arch,
        "horizon": manifest.horizon,
        "input_size": manifest.input_size,
        "smape": {m: test[m]["smape"] for m in methods},
        "mase": {m: test[m]["mase"] for m in methods},
        "beats_naive": test["model"]["smape"] < test["naive"]["smape"]
        and test["model"]["mase"] < test["naive"]["mase"],
        "coverage": manifest.intervals.coverage,
        "epochs": manifest.epochs_run,
        "best_epoch": manifest.best_epoch,
        "seconds": round(seconds, 1),
    }


def m4_runs(workdir: Path, max_epochs: int, archs: list[str]) -> list[dict[str, object]]:
    """One global model per architecture over all 359 series."""
    data = m4_weekly_long(workdir)
    registry = Registry(workdir / "registry")
    runs = []
    for arch in archs:
        config = TrainingConfig.model_validate(
            {"arch": arch, "input_size": 52, "horizon": 13, "hidden_size": 64, "val_size": 13, "test_size": 13,
             "max_epochs": max_epochs, "patience": 5, "seed": 0, "device": "cpu"}
        )  # fmt: skip
        started = time.perf_counter()
        outcome = run_training(data, f"m4-weekly-{arch}", config, registry, progress=False)
        runs.append(m4_row(outcome.manifest, time.perf_counter() - started))
        print(runs[-1], file=sys.stderr)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["ett", "m4"])
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--m4-archs", default="lstm", help="comma-separated architectures for M4 Weekly")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        result: dict[str, object] = {"machine": machine()}
        if args.only in (None, "ett"):
            result["etth1"] = ett_runs(workdir, args.max_epochs)
        if args.only in (None, "m4"):
            result["m4_weekly"] = m4_runs(workdir, args.max_epochs, args.m4_archs.split(","))
    emit("accuracy" if args.only is None else f"accuracy_{args.only}", result)


if __name__ == "__main__":
    main()
