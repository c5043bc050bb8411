"""The training job with covariates, through the real `forecast train` command: the manifest says
which covariates the version reads with their scaling and categories; the version round-trips
through the registry and serves exactly the numbers of its own evaluation; the covariates beat
the same network without them on data they drive; --retrain keeps them, and a file that lacks
one is refused in one line; a file with columns nobody named says so."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.registry.store import Registry
from forecast.serving.engine import Engine
from forecast.settings import Settings
from tests.factories import Posted, covariate_frame
from tests.support.cli import SMALL_MODEL_ARGS, CliResult, manifest, read_json, run_forecast_many
from tests.support.data import write_csv

COVARIATE_FLAGS = ("--past-covariates", "load", "--future-covariates", "temperature", "--static-covariates", "region")
HORIZON = 12


@dataclass(slots=True)
class Runs:
    registry: Path
    frame: pd.DataFrame
    results: dict[str, CliResult]


def _with_covariate_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Empty cells in every 7th load and every 11th temperature (not the last rows of a series:
    a future-known covariate must be known to the end)."""
    gappy = frame.copy()
    position = gappy.groupby("series_id").cumcount()
    last = gappy.groupby("series_id")["timestamp"].transform("max") == gappy["timestamp"]
    gappy.loc[position % 7 == 3, "load"] = np.nan
    gappy.loc[(position % 11 == 5) & ~last, "temperature"] = np.nan
    return gappy


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """One batch of real `forecast` processes over covariate_frame's series."""
    folder = tmp_path_factory.mktemp("covariates")
    frame = covariate_frame(n_points=500)
    data = write_csv(frame, folder / "data.csv")
    gappy = write_csv(_with_covariate_gaps(frame), folder / "gappy.csv")
    no_temperature = write_csv(frame.drop(columns=["temperature"]), folder / "no-temperature.csv")
    registry = folder / "registry"

    def train(name: str, source: Path, *extra: str) -> list[str]:
        return ["train", "--data", str(source), "--name", name, "--registry", str(registry), *extra]

    # --no-refit where a test compares the served forecasts with the report's evaluated ones
    invocations = {
        "with": train("driven", data, *SMALL_MODEL_ARGS, *COVARIATE_FLAGS, "--force", "--no-refit"),
        "without": train("plain", data, *SMALL_MODEL_ARGS, "--force"),
        "adds_covariates": train("plain", data, *SMALL_MODEL_ARGS, *COVARIATE_FLAGS, "--promote"),
        "retrain": train("driven", data, "--retrain", "--quiet", "--force"),
        "retrain_lacking": train("driven", no_temperature, "--retrain", "--quiet"),
        "show": ["models", "show", "driven", "--registry", str(registry)],
        "gappy": train("gappy", gappy, *SMALL_MODEL_ARGS, *COVARIATE_FLAGS, "--force", "--no-refit"),
    }
    results = run_forecast_many(list(invocations.values()), folder / "runs")
    return Runs(registry, frame, dict(zip(invocations, results, strict=True)))


def test_the_manifest_says_which_covariates_the_version_reads(runs: Runs) -> None:
    assert runs.results["with"].returncode == 0, runs.results["with"].describe()
    recorded = manifest(runs.registry, "driven", 1)
    covariates = recorded["covariates"]
    assert [c["name"] for c in covariates["past"]] == ["load"]
    assert [c["name"] for c in covariates["future"]] == ["temperature"]
    assert covariates["static"] == [
        {"name": "region", "kind": "categorical", "loc": 0.0, "scale": 1.0, "categories": ["north", "south"]}
    ]
    temperature = covariates["future"][0]
    training_part = runs.frame.groupby("series_id").head(500 - 2 * 48)["temperature"]  # the blocks are 48 each
    assert temperature["loc"] == pytest.approx(training_part.mean())
    assert temperature["scale"] == pytest.approx(training_part.std(ddof=0))
    assert recorded["format_version"] == 3 and recorded["training"]["network"]["horizon_inputs"] is True
    assert "covariates: past load; future temperature; static region" in runs.results["show"].stdout


def test_covariates_that_drive_the_series_beat_the_same_network_without_them(runs: Runs) -> None:
    with_covariates = manifest(runs.registry, "driven", 1)["metrics"]["test"]["model"]["mae"]
    without = manifest(runs.registry, "plain", 1)["metrics"]["test"]["model"]["mae"]
    assert with_covariates < 0.5 * without


def test_a_file_with_unnamed_columns_says_which_were_not_used(runs: Runs) -> None:
    lines = [line for line in runs.results["without"].stderr_lines if "columns not used" in line]
    assert len(lines) == 1 and "temperature, load, region" in lines[0]
    assert not any("columns not used" in line for line in runs.results["with"].stderr_lines)


def test_retrain_keeps_the_covariates_and_refuses_a_file_that_lacks_one(runs: Runs) -> None:
    assert runs.results["retrain"].returncode == 0, runs.results["retrain"].describe()
    retrained = manifest(runs.registry, "driven", 2)
    assert retrained["covariates"]["future"][0]["name"] == "temperature"
    lacking = runs.results["retrain_lacking"]
    assert lacking.returncode == 2
    assert len(lacking.stderr_lines) == 1, lacking.describe()
    assert (
        "['temperature']" in lacking.stderr and "--retrain keeps the production version's covariates" in lacking.stderr
    )


def _posted_at(frame: pd.DataFrame, series_id: str, origin: str) -> Posted:
    """The series as a client would post it at `origin`: its history, the past covariate beside
    it, the future-known covariate until the horizon's end, its region."""
    rows = frame[frame["series_id"] == series_id].reset_index(drop=True)
    cut = int(np.flatnonzero(rows["timestamp"] == pd.Timestamp(origin))[0])
    return Posted(
        series_id,
        rows["value"].iloc[:cut].tolist(),
        start=rows["timestamp"].iloc[0].isoformat(),
        past_covariates={"load": rows["load"].iloc[:cut].tolist()},
        future_covariates={"temperature": rows["temperature"].iloc[: cut + HORIZON].tolist()},
        static_covariates={"region": rows["region"].iloc[0]},
    )


def _served_equals_the_report(registry: Path, name: str, frame: pd.DataFrame) -> None:
    """Test origins of the version's report, posted as a client would, through the engine's load
    from the registry and the version's serving pipeline, forecast what the report says."""
    samples = read_json(registry / name / "versions" / "1" / "report.json")["samples"]
    posted = [_posted_at(frame, s["series_id"], s["origin"]) for s in samples[:4]]
    for series, sample in zip(posted, samples, strict=False):
        series.id = f"{sample['series_id']}@{sample['origin']}"

    async def serve() -> np.ndarray:
        engine = Engine(Registry(registry), Settings(registry=str(registry), device="cpu", reload_seconds=3600))
        await engine.start()
        try:
            async with engine.lease(name, 1) as served:
                answer = await served.pipeline.forecast(posted, horizon=None, levels=[], timeout_s=30.0)
                return answer.mean
        finally:
            await engine.stop()

    served = asyncio.run(serve())
    expected = np.array([sample["forecast"] for sample in samples[:4]])
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-4)
    assert json.loads(json.dumps(served.tolist()))  # finite, JSON-writable


def test_the_version_serves_exactly_the_numbers_of_its_evaluation(runs: Runs) -> None:
    """No skew with covariates."""
    _served_equals_the_report(runs.registry, "driven", runs.frame)


def test_covariate_gaps_train_and_serve_the_numbers_of_the_evaluation(runs: Runs) -> None:
    """Empty covariate cells are gaps, filled by the same rule in training, evaluation and
    serving (posted as NaN here): the version trains, scores finitely and shows no skew."""
    assert runs.results["gappy"].returncode == 0, runs.results["gappy"].describe()
    metrics = manifest(runs.registry, "gappy", 1)["metrics"]["test"]["model"]
    assert all(np.isfinite(value) for value in metrics.values())
    _served_equals_the_report(runs.registry, "gappy", _with_covariate_gaps(runs.frame))


def test_a_version_that_adds_covariates_is_compared_with_production_without_them(runs: Runs) -> None:
    """--promote scores production (no covariates) on the new version's data and test block: the
    version that reads the drivers beats it and becomes production."""
    result = runs.results["adds_covariates"]
    assert result.returncode == 0, result.describe()
    assert "beats production version 1" in result.stdout and "promoted" in result.stdout
    assert json.loads((runs.registry / "plain" / "aliases.json").read_text()) == {"production": 2}
