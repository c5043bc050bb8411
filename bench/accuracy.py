"""Accuracy benchmark, with the product's defaults and their ablations (ABLATIONS):

- ETTh1 (Informer split, target OT, z-scored MSE/MAE) at horizons 24 and 96 for LSTM and GRU,
  trained with the real training job, metrics read back from the manifest; ablations on the
  LSTM at H=96.
- M4 Hourly (bench/m4_hourly.py): the last 48 points of each given series hidden, the real
  `forecast train` command with its defaults, the real API, M4's sMAPE/MASE/OWA on the hidden
  points, beside the seasonal naive and statsforecast's MSTL measured in the same run;
  ablations on the LSTM.
- M4 Weekly: one global model beside the naive baselines.

    python bench/accuracy.py [--only ett|m4h|m4] [--no-ablations]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import covariates, m4_hourly
from bench.common import SHARED_DATA, emit, machine
from forecast.config.training import TrainingConfig
from forecast.model.config import Architecture
from forecast.registry.manifest import Manifest
from forecast.registry.store import Registry
from forecast.series.tables import BUNDLED_SETS
from forecast.training.job import run_training

# Published or protocol anchors (MSE on the z-scored OT series), from the issue.
ETT_ANCHORS = {
    24: {"naive": 0.0343, "seasonal_naive": 0.0458, "informer": 0.098, "lstma": 0.114},
    96: {"naive": 0.0693, "seasonal_naive": 0.0715, "dlinear": 0.056, "patchtst": 0.055},
}
ETT_ROWS, ETT_TRAIN_ROWS, ETT_BLOCK = covariates.ETT_ROWS, covariates.ETT_TRAIN_ROWS, covariates.ETT_BLOCK


ETT_ARCHS: tuple[Architecture, ...] = ("lstm", "gru")


# name -> (training settings beside the defaults, what the row shows). The ablations compare with
# "single", the default network with one member.
ABLATIONS: dict[str, dict[str, object]] = {
    "single": {"ensemble": 1},
    "skip_only": {"ensemble": 1, "recurrent": False},  # NLinear-like: the anchor and the linear skip
    "rnn_only": {"ensemble": 1, "linear_skip": False},
    "naive_anchor": {"ensemble": 1, "anchor_period": 1},
    "loss_mse": {"ensemble": 1, "loss": "mse"},
    "loss_mase": {"ensemble": 1, "loss": "mase"},
    "loss_msse": {"ensemble": 1, "loss": "msse"},
    "skip_by_gradient": {"ensemble": 1, "solve_skip": False},  # no ridge start: the epochs fit the skip too
    "scaling_window": {"ensemble": 1, "scaling": "window"},  # the default for several series
    "scaling_global": {"ensemble": 1, "scaling": "global"},  # the default for one series
    "pointwise": {"ensemble": 1, "segment_length": 1},
    # the horizon's calendar features reach the head and the skip (the default with future covariates)
    "horizon_inputs": {"ensemble": 1, "horizon_inputs": True},
}


# ETTh1 at H=24 with a one-week window (the 0.0275 bar): the defaults beside the linear
# part alone and window scaling, which show what the recurrent encoder's kept epochs cost there.
ETT_L168_VARIANTS: dict[str, dict[str, object]] = {
    "defaults": {},
    "skip_only": {"recurrent": False},
    "scaling_window": {"scaling": "window"},
}


def ett_config(horizon: int, arch: str, overrides: dict[str, object]) -> TrainingConfig:
    """The Informer protocol's blocks; the product's defaults for everything else."""
    settings = {"arch": arch, "input_size": 336, "horizon": horizon, "val_size": ETT_BLOCK, "test_size": ETT_BLOCK}
    return TrainingConfig.model_validate({**settings, "device": "cpu", **overrides})


def ett_row(outcome_manifest: Manifest, variant: str, std: float, seconds: float) -> dict[str, object]:
    test = defined(outcome_manifest.metrics["test"])
    network = outcome_manifest.network
    return {
        "dataset": "ETTh1/OT",
        "variant": variant,
        "arch": network.arch,
        "horizon": network.horizon,
        "input_size": network.input_size,
        "anchor_period": network.anchor_period,
        "segment_length": network.segment_length,
        "ensemble": network.ensemble,
        "mse": {m: test[m]["mse"] / std**2 for m in ("model", "naive", "seasonal_naive")},
        "mae": {m: test[m]["mae"] / std for m in ("model", "naive", "seasonal_naive")},
        "anchors_mse": ETT_ANCHORS[network.horizon],
        "coverage": outcome_manifest.intervals.coverage,
        "epochs": outcome_manifest.epochs_run,
        "seconds": round(seconds, 1),
    }


def ett_runs(workdir: Path, plan_of: Plan) -> list[dict[str, object]]:
    """LSTM and GRU at H=24 and H=96 with the defaults; the ablations on the LSTM at H=96."""
    frame = pd.read_csv(BUNDLED_SETS["etth1"])[["date", "OT"]].iloc[:ETT_ROWS]
    data = workdir / "etth1_informer.csv"
    frame.to_csv(data, index=False)
    train = frame["OT"].to_numpy()[:ETT_TRAIN_ROWS]
    std = float(train.std())  # population std, as the protocol says
    registry = Registry(workdir / "registry")
    plan: list[tuple[int, str, str, dict[str, object]]] = [
        (h, arch, "defaults", {}) for h in (24, 96) for arch in ETT_ARCHS if plan_of.defaults
    ]
    plan += [(96, "lstm", name, o) for name, o in plan_of.ablations("scaling_global")]  # one series: global
    if plan_of.defaults:  # the other window: H=24 at L=168, where the encoder's epochs overfit
        plan += [(24, "lstm", f"L168_{name}", {"input_size": 168, **o}) for name, o in ETT_L168_VARIANTS.items()]
    runs: list[dict[str, object]] = []
    for horizon, arch, variant, overrides in plan:
        started = time.perf_counter()
        outcome = run_training(
            data, f"ett-{arch}-{horizon}-{variant}", ett_config(horizon, arch, overrides), registry, progress=False
        )
        runs.append(ett_row(outcome.manifest, variant, std, time.perf_counter() - started))
        print(runs[-1], file=sys.stderr)
    return runs


def ett_covariate_runs(workdir: Path) -> dict[str, object]:
    """ETTh1's six loads as past covariates of OT, beside the same defaults without them and
    statsmodels' VAR over the seven columns, at H=24 and H=96."""
    frame = pd.read_csv(BUNDLED_SETS["etth1"])[["date", *covariates.ETT_LOADS, "OT"]].iloc[:ETT_ROWS]
    data = workdir / "etth1_informer_loads.csv"
    frame.to_csv(data, index=False)
    std = float(frame["OT"].to_numpy()[:ETT_TRAIN_ROWS].std())
    registry = Registry(workdir / "registry-loads")
    runs: list[dict[str, object]] = []
    peers = {}
    for horizon in (24, 96):
        peers[f"var_h{horizon}"] = covariates.ett_var(horizon)
        print(peers[f"var_h{horizon}"], file=sys.stderr)
        for arch in ETT_ARCHS:
            for variant, overrides in (
                ("without_covariates", {}),
                ("past_loads", {"past_covariates": covariates.ETT_LOADS}),
            ):
                started = time.perf_counter()
                config = ett_config(horizon, arch, {"target": "OT", **overrides})
                outcome = run_training(
                    data, f"ett-{arch}-{horizon}-{variant}".replace("_", "-"), config, registry, progress=False
                )
                runs.append(ett_row(outcome.manifest, variant, std, time.perf_counter() - started))
                print(runs[-1], file=sys.stderr)
    return {"runs": runs, "statsmodels_var": peers}


def m4_hourly_runs(workdir: Path, plan_of: Plan) -> dict[str, object]:
    """The defaults through the real CLI and API for LSTM and GRU, the ablations on the LSTM,
    beside the seasonal naive and MSTL, all on the same hidden 48 points."""
    parts = m4_hourly.split(workdir)
    registry = workdir / "m4h-registry"
    baselines: dict[str, object] = {"seasonal_naive": m4_hourly.score(m4_hourly.seasonal_naive(parts), parts)}
    mstl, mstl_seconds = m4_hourly.mstl(parts)
    baselines["statsforecast_mstl"] = {**m4_hourly.score(mstl, parts), "seconds": round(mstl_seconds, 1)}
    print(baselines, file=sys.stderr)
    runs = []
    plan: list[tuple[str, str, dict[str, object]]] = [("defaults", arch, {}) for arch in ETT_ARCHS if plan_of.defaults]
    plan += [(name, "lstm", o) for name, o in plan_of.ablations("scaling_window")]  # many series: window
    for variant, arch, overrides in plan:
        extra = []
        if overrides:
            config = workdir / f"m4h-{variant}.json"
            config.write_text(json.dumps(overrides))
            extra = ["--config", str(config)] + (["--max-epochs", "3"] if variant == "pointwise" else [])
        row = m4_hourly.cli_and_api(parts, registry, arch, extra, name=f"m4h-{arch}-{variant}")
        runs.append({"variant": variant, **row})
        print(runs[-1], file=sys.stderr)
    return {"baselines": baselines, "runs": runs, "anchors_held_back_owa": m4_hourly.ANCHORS_HELD_BACK_OWA}


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
            {
                "arch": arch,
                "input_size": 52,
                "horizon": 13,
                "hidden_size": 64,
                "val_size": 13,
                "test_size": 13,
                "max_epochs": max_epochs,
                "patience": 5,
                "seed": 0,
                "device": "cpu",
            }
        )
        started = time.perf_counter()
        outcome = run_training(data, f"m4-weekly-{arch}", config, registry, progress=False)
        runs.append(m4_row(outcome.manifest, time.perf_counter() - started))
        print(runs[-1], file=sys.stderr)
    return runs


@dataclass(slots=True)
class Plan:
    """Which runs to make: the defaults, and which ablations (all of them unless named)."""

    defaults: bool = True
    names: list[str] | None = None  # None: every ablation

    def ablations(self, default_of_the_set: str) -> list[tuple[str, dict[str, object]]]:
        """The chosen ablations, less the one that is the set's default already."""
        chosen = ABLATIONS if self.names is None else {name: ABLATIONS[name] for name in self.names}
        return [(name, overrides) for name, overrides in chosen.items() if name != default_of_the_set]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["ett", "m4h", "m4", "covariates"])
    parser.add_argument("--no-ablations", action="store_true", help="the defaults only")
    parser.add_argument("--ablations", help=f"comma-separated ablations to run (default all: {', '.join(ABLATIONS)})")
    parser.add_argument("--no-defaults", action="store_true", help="the ablations only")
    parser.add_argument("--max-epochs", type=int, default=20, help="M4 Weekly only")
    parser.add_argument("--m4-archs", default="lstm", help="comma-separated architectures for M4 Weekly")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        result: dict[str, object] = {"machine": machine()}
        names = [] if args.no_ablations else (args.ablations.split(",") if args.ablations else None)
        plan = Plan(defaults=not args.no_defaults, names=names)
        if args.only in (None, "ett"):
            result["etth1"] = ett_runs(workdir, plan)
        if args.only in (None, "m4h"):
            result["m4_hourly"] = m4_hourly_runs(workdir, plan)
        if args.only in (None, "covariates"):
            result["covariates"] = {
                "etth1_past_loads": ett_covariate_runs(workdir),
                "chicago": covariates.held_out_runs(covariates.chicago(), workdir, ETT_ARCHS, blocks=364),
                "synthetic_demand": covariates.held_out_runs(
                    covariates.synthetic_demand(), workdir, ETT_ARCHS, blocks=1344
                ),
            }
        if args.only in (None, "m4"):
            result["m4_weekly"] = m4_runs(workdir, args.max_epochs, args.m4_archs.split(","))
    emit("accuracy" if args.only is None else f"accuracy_{args.only}", result)


if __name__ == "__main__":
    main()
