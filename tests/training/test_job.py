"""The training job end to end through the real `forecast train` command: it beats seasonal
naive, records what the contract promises, is deterministic, and moves `production` only by
the rules (first version, --promote when better); --retrain and --warm-start reuse production."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from forecast.registry.store import PRODUCTION
from tests.conftest import (
    SMALL_MODEL_ARGS,
    CliResult,
    TrainedRegistry,
    aliases,
    manifest,
    read_json,
    run_forecast_many,
    seasonal_frame,
    train,
    write_csv,
)

BLOCKS = ("validation", "test")
METHODS = ("model", "naive", "seasonal_naive")
METRICS = ("mae", "mse", "rmse", "smape", "mase")


def version_dir(registry: Path, name: str, version: int) -> Path:
    return registry / name / "versions" / str(version)


def test_a_small_train_beats_seasonal_naive_on_test(trained_registry: TrainedRegistry) -> None:
    test = manifest(trained_registry.root, "demo", 1)["metrics"]["test"]

    assert test["model"]["mae"] < test["seasonal_naive"]["mae"]
    assert test["model"]["mae"] < test["naive"]["mae"]


def test_the_manifest_holds_every_metric_coverage_and_file_checksum(trained_registry: TrainedRegistry) -> None:
    folder = version_dir(trained_registry.root, "demo", 1)
    recorded = manifest(trained_registry.root, "demo", 1)

    for block in BLOCKS:
        for method in METHODS:
            values = recorded["metrics"][block][method]
            assert set(values) == set(METRICS), (block, method)
            assert all(math.isfinite(value) and value >= 0 for value in values.values()), (block, method, values)
            assert math.isclose(values["rmse"], math.sqrt(values["mse"]), rel_tol=1e-9)
    coverage = recorded["intervals"]["coverage"]
    assert set(coverage) == {"50", "80", "90", "95"}
    assert all(0.0 <= value <= 1.0 for value in coverage.values())
    assert recorded["files"] == {
        filename: hashlib.sha256((folder / filename).read_bytes()).hexdigest()
        for filename in ("model.safetensors", "report.json")
    }
    assert recorded["training"]["network"]["arch"] == "lstm"
    assert (recorded["training"]["network"]["input_size"], recorded["training"]["network"]["horizon"]) == (48, 12)
    assert recorded["freq"] == "h"
    assert recorded["data"]["n_series"] == 3


def test_the_report_holds_epochs_and_test_samples(trained_registry: TrainedRegistry) -> None:
    recorded = manifest(trained_registry.root, "demo", 1)
    report = read_json(version_dir(trained_registry.root, "demo", 1) / "report.json")

    assert [epoch["epoch"] for epoch in report["epochs"]] == list(range(1, recorded["epochs_run"] + 1))
    assert all(math.isfinite(epoch["train_loss"]) and math.isfinite(epoch["val_loss"]) for epoch in report["epochs"])
    assert report["samples"], "no actual-vs-forecast samples for the dashboard"
    assert {sample["series_id"] for sample in report["samples"]} <= {"a", "b", "c"}


def test_the_first_version_becomes_production(trained_registry: TrainedRegistry) -> None:
    output = trained_registry.output.stdout

    assert "wrote demo version 1" in output
    assert "first version of this model: now production" in output
    assert aliases(trained_registry.root, "demo") == {PRODUCTION: 1}


def test_the_same_seed_and_data_give_byte_identical_weights(trained_registry: TrainedRegistry, tmp_path: Path) -> None:
    again = tmp_path / "registry"
    train(trained_registry.data, again, "demo")

    first = version_dir(trained_registry.root, "demo", 1)
    second = version_dir(again, "demo", 1)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert manifest(again, "demo", 1)["metrics"] == manifest(trained_registry.root, "demo", 1)["metrics"]


@dataclass(slots=True)
class FollowUps:
    """Trains on top of the session's production version, each on its own copy of the registry."""

    retrain: Path
    warm_start: Path
    promote: Path
    results: dict[str, CliResult]


@pytest.fixture(scope="module")
def follow_ups(trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory) -> FollowUps:
    """One batch of real `forecast` processes (one torch import for all of them)."""
    folder = tmp_path_factory.mktemp("follow-ups")
    runs = FollowUps(
        retrain=trained_registry.copy_to(folder / "retrain"),
        warm_start=trained_registry.copy_to(folder / "warm-start"),
        promote=trained_registry.copy_to(folder / "promote"),
        results={},
    )
    new_data = write_csv(seasonal_frame(seed=1, n_points=450), folder / "new.csv")
    data = str(trained_registry.data)

    def train_demo(registry: Path, source: str = data) -> list[str]:
        return ["train", "--data", source, "--name", "demo", "--registry", str(registry)]

    # An untrained network forecasts exactly the naive forecast: far worse than production.
    untrained = ["--max-epochs", "1", "--learning-rate", "1e-9"]
    invocations = {
        "retrain": [*train_demo(runs.retrain, str(new_data)), "--retrain", "--quiet"],
        # one epoch at a negligible learning rate: the weights stay where training started
        "warm-start": [*train_demo(runs.warm_start), "--warm-start", *untrained, "--device", "cpu", "--quiet"],
        "worse": [*train_demo(runs.promote), *SMALL_MODEL_ARGS, *untrained, "--promote"],  # version 2
        "rollback": ["models", "promote", "demo", "2", "--registry", str(runs.promote)],  # an operator's rollback
        "better": [*train_demo(runs.promote), *SMALL_MODEL_ARGS, "--promote"],  # version 3
    }
    results = run_forecast_many(list(invocations.values()), folder / "runs")
    runs.results = dict(zip(invocations, results, strict=True))
    for result in results:
        assert result.returncode == 0, result.describe()
    return runs


def test_retrain_needs_only_name_and_data_and_leaves_production(follow_ups: FollowUps) -> None:
    registry = follow_ups.retrain
    production, retrained = manifest(registry, "demo", 1), manifest(registry, "demo", 2)

    assert retrained["training"]["network"] == production["training"]["network"]
    assert retrained["freq"] == production["freq"] and retrained["scaling"] == production["scaling"]
    per_run = {"device", "seed"}
    assert {k: v for k, v in retrained["training"].items() if k not in per_run} == {
        k: v for k, v in production["training"].items() if k not in per_run
    }
    assert retrained["data"]["n_points"] == 3 * 450, "not trained on the new data"
    assert retrained["parent_version"] is None
    assert "production stays at version 1" in follow_ups.results["retrain"].stdout
    assert aliases(registry, "demo") == {PRODUCTION: 1}


def test_warm_start_begins_from_the_production_weights(follow_ups: FollowUps) -> None:
    registry = follow_ups.warm_start

    assert manifest(registry, "demo", 2)["parent_version"] == 1
    production = load_file(version_dir(registry, "demo", 1) / "model.safetensors")
    warm = load_file(version_dir(registry, "demo", 2) / "model.safetensors")
    assert production.keys() == warm.keys()
    for key, tensor in production.items():
        torch.testing.assert_close(warm[key], tensor, atol=1e-6, rtol=0, msg=f"{key} did not start from production")
    assert aliases(registry, "demo") == {PRODUCTION: 1}


def test_promote_moves_production_only_to_a_better_version(follow_ups: FollowUps) -> None:
    registry, results = follow_ups.promote, follow_ups.results

    assert "does not beat production version 1" in results["worse"].stdout
    assert "not promoted" in results["worse"].stdout
    assert "beats production version 2" in results["better"].stdout
    assert results["better"].stdout.count("promoted") == 1 and "not promoted" not in results["better"].stdout
    assert aliases(registry, "demo") == {PRODUCTION: 3}
    test_mase = [manifest(registry, "demo", v)["metrics"]["test"]["model"]["mase"] for v in (1, 2, 3)]
    assert test_mase[1] > test_mase[0], "the untrained version should be the worse one"
    assert test_mase[2] < test_mase[1]


def periodic_frame(kind: str) -> pd.DataFrame:
    steps = np.arange(600)
    values = 10 + 3 * np.sin(2 * np.pi * steps / 24) if kind == "periodic" else np.full(600, 5.0)
    timestamps = pd.date_range("2024-01-01", periods=600, freq="h")
    return pd.DataFrame({"series_id": kind, "timestamp": timestamps, "value": values})


def test_a_perfectly_periodic_series_trains_into_a_loadable_version_with_a_finite_mase(tmp_path: Path) -> None:
    # Its seasonal differences are all zero: MASE falls back to the step-to-step scale instead of
    # dividing by zero (which once wrote null into the manifest and left an unloadable version).
    data = write_csv(periodic_frame("periodic"), tmp_path / "periodic.csv")
    train(data, tmp_path / "registry", "periodic")
    test = manifest(tmp_path / "registry", "periodic", 1)["metrics"]["test"]
    # errors measured in steps of the sine (~0.5): a handful, not 1e14 from a rounding-noise scale
    assert all(0 <= test[method]["mase"] < 100 for method in METHODS), test
    shown = run_forecast_many([["models", "list", "--registry", str(tmp_path / "registry")]], tmp_path)[0]
    assert shown.returncode == 0 and "periodic" in shown.stdout, shown.describe()


def test_a_constant_series_has_an_undefined_mase_stored_as_null(tmp_path: Path) -> None:
    data = write_csv(periodic_frame("constant"), tmp_path / "constant.csv")
    result = train(data, tmp_path / "registry", "constant")
    test = manifest(tmp_path / "registry", "constant", 1)["metrics"]["test"]
    assert [test[method]["mase"] for method in METHODS] == [None, None, None]
    assert all(math.isfinite(test[method]["mae"]) for method in METHODS)
    assert "model" in result.stdout  # the metrics table prints, with '-' for the undefined MASE
