"""The training job end to end through the real `forecast train` command: it beats seasonal
naive, records what the contract promises, is deterministic, and moves `production` only by
the rules (first version, --promote when better); --retrain and --warm-start reuse production."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from forecast.registry.store import PRODUCTION
from tests.support.cli import (
    SMALL_MODEL_ARGS,
    CliResult,
    TrainedRegistry,
    aliases,
    manifest,
    read_json,
    run_forecast_many,
    serve_once,
    train,
    version_dir,
)
from tests.support.data import seasonal_frame, write_csv

BLOCKS = ("validation", "test")


METHODS = ("model", "naive", "seasonal_naive")
METRICS = ("mae", "mse", "rmse", "smape", "mase")


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

    members = sorted({epoch["member"] for epoch in report["epochs"]})
    assert members == list(range(recorded["training"]["network"]["ensemble"]))
    for member in members:  # each member's epochs, in order, and every epoch run is there
        numbers = [epoch["epoch"] for epoch in report["epochs"] if epoch["member"] == member]
        assert numbers == list(range(1, len(numbers) + 1))
    most = max(sum(epoch["member"] == member for epoch in report["epochs"]) for member in members)
    assert most == recorded["epochs_run"] <= recorded["training"]["max_epochs"], "the most epochs one member ran"
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

    # One epoch at a negligible learning rate: the weights stay where training started.
    untrained = ["--max-epochs", "1", "--learning-rate", "1e-9"]
    # Without the linear skip (which the job solves in closed form before the first epoch), that
    # start is the anchor baseline: far worse than production (and no better than the seasonal
    # naive, so --force takes it past the gate, to the comparison with production).
    no_skip = folder / "no-skip.json"
    no_skip.write_text(json.dumps({"linear_skip": False}))
    invocations = {
        "retrain": [*train_demo(runs.retrain, str(new_data)), "--retrain", "--quiet"],
        "warm-start": [*train_demo(runs.warm_start), "--warm-start", *untrained, "--device", "cpu", "--quiet"],
        "worse": [
            *train_demo(runs.promote),
            *SMALL_MODEL_ARGS,
            *untrained,
            "--config",
            str(no_skip),
            "--promote",
            "--force",
        ],
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


def test_a_network_that_loses_to_its_anchor_still_leaves_a_production_version_serving_the_anchor(
    tmp_path: Path,
) -> None:
    # A perfect daily cycle: the seasonal naive is exact, so no network can beat it, not even the
    # first version of a name. The user still gets a forecast: the seasonal naive, published as a
    # version of the name and served through the same path.
    frame = periodic_frame("periodic")
    data = write_csv(frame, tmp_path / "periodic.csv")
    registry = tmp_path / "registry"
    published = train(data, registry, "cycle")
    recorded = manifest(registry, "cycle", 1)
    gate = recorded["gate"]
    assert gate["passed"] is True and gate["network_lost"] >= gate["seasonal_naive"] == gate["model"]
    assert "did not beat the seasonal naive" in published.stdout and "published its anchor" in published.stdout
    assert aliases(registry, "cycle") == {PRODUCTION: 1}
    network = recorded["training"]["network"]
    assert network["recurrent"] is False and network["anchor_period"] == 24
    assert recorded["metrics"]["test"]["model"] == recorded["metrics"]["test"]["seasonal_naive"]
    history = frame.iloc[-100:]
    served = serve_once(registry, "cycle", [t.isoformat() for t in history["timestamp"]], list(history["value"]))
    horizon = len(served)
    np.testing.assert_allclose(served, history["value"].to_numpy()[-24:][:horizon], rtol=1e-6)

    forced = train(data, registry, "cycle", "--force")
    forced_gate = manifest(registry, "cycle", 2)["gate"]
    assert forced_gate["passed"] is False and forced_gate["forced"] is True and forced_gate["network_lost"] is None
    assert manifest(registry, "cycle", 2)["training"]["network"]["recurrent"] is True  # the network itself
    assert aliases(registry, "cycle") == {PRODUCTION: 1}, "production stays without --promote"
    assert "pass --promote" in forced.stdout


def test_an_ensemble_is_one_version_that_serves_the_numbers_of_its_evaluation(tmp_path: Path) -> None:
    """Two members in one safetensors file and one manifest; the serving pipeline, fed a test
    window from the report, answers what the training job's evaluation forecast for it."""
    data = write_csv(seasonal_frame(), tmp_path / "series.csv")
    registry_root = tmp_path / "registry"
    train(data, registry_root, "duo", "--ensemble", "2", "--force", "--no-refit")  # serves what it evaluated
    folder = version_dir(registry_root, "duo", 1)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.safetensors", "report.json"]
    weights = load_file(folder / "model.safetensors")
    assert {key.split(".")[1] for key in weights} == {"0", "1"}, "both members' weights, under members.N."
    assert not torch.equal(weights["members.0.head.weight"], weights["members.1.head.weight"])  # two seeds

    sample = read_json(folder / "report.json")["samples"][0]
    served = serve_once(registry_root, "duo", sample["history_timestamps"], sample["history"])
    np.testing.assert_allclose(served, sample["forecast"], rtol=0, atol=1e-4)


def test_the_input_size_left_out_is_picked_recorded_and_kept_by_retrain(tmp_path: Path) -> None:
    """`--input-size` is optional: on hourly data the job picks a week (168), writes it into the
    network and marks it picked; --retrain keeps production's window rather than picking again."""
    data = write_csv(seasonal_frame(), tmp_path / "series.csv")
    registry = tmp_path / "registry"
    flags = ("--arch", "gru", "--horizon", "12", "--hidden-size", "8", "--max-epochs", "1", "--ensemble", "1")
    train(data, registry, "picked", *flags, "--device", "cpu", "--quiet", "--force", defaults=False)
    first = manifest(registry, "picked", 1)["training"]
    assert first["network"]["input_size"] == 168 and first["input_size_picked"] is True
    samples = read_json(version_dir(registry, "picked", 1) / "report.json")["samples"]
    assert samples and all(len(sample["history"]) == 168 for sample in samples)
    train(data, registry, "picked", "--retrain", "--quiet", "--force", defaults=False)
    again = manifest(registry, "picked", 2)["training"]
    assert again["network"]["input_size"] == 168 and again["input_size_picked"] is False
