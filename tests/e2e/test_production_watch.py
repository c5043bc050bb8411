"""Production watched on fresh data, with real processes: `forecast backtest` reproduces the
job's test metrics; `forecast evaluate` scores production on data that arrived after its
training and appends a record that the registry, the API and /metrics show; `forecast train
--retrain --promote --if-degraded` retrains when production lost its edge, and only then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.cli import run_forecast_many
from tests.support.data import seasonal_frame
from tests.support.servers import Server, run_cli, train, wait_until

TRAINED_POINTS, LATER_POINTS = 400, 100


def _changed(frame: pd.DataFrame) -> pd.DataFrame:
    """After the training data the series change behaviour: their daily cycle becomes a clean
    twelve-hour one. The seasonal naive (a day back) follows at once; a model of the old cycle
    does not."""
    changed = frame.copy()
    for _, rows in changed.groupby("series_id"):
        later = rows.index[TRAINED_POINTS:]
        steps = np.arange(len(later))
        level = float(rows["value"].iloc[TRAINED_POINTS - 1])
        changed.loc[later, "value"] = level + 4.0 * np.sin(2 * np.pi * steps / 12) + 0.01 * steps
    return changed


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A registry whose production (version 1) was trained on the first 400 points of two
    series, and files of what came after: the same behaviour, or a changed one."""
    workdir = tmp_path_factory.mktemp("watch")
    full = seasonal_frame(series_ids=("a", "b"), n_points=TRAINED_POINTS + LATER_POINTS, seed=3)
    history = full.groupby("series_id").head(TRAINED_POINTS)
    paths = {"history": workdir / "history.csv", "holds": workdir / "holds.csv", "changed": workdir / "changed.csv"}
    history.to_csv(paths["history"], index=False)
    full.to_csv(paths["holds"], index=False)
    _changed(full).to_csv(paths["changed"], index=False)
    registry = workdir / "registry"
    train(registry, paths["history"], "watched", "lstm", "--no-refit", "--force")
    return {**paths, "registry": registry, "workdir": workdir}


def _records(registry: Path, name: str) -> list[dict]:
    folder = registry / name / "accuracy"
    return [json.loads((folder / n / "record.json").read_text()) for n in sorted(p.name for p in folder.iterdir())]


def test_the_backtest_command_reproduces_the_jobs_test_metrics(watched: dict[str, Path]) -> None:
    registry = watched["registry"]
    common = ["backtest", "--data", str(watched["history"]), "--name", "watched", "--registry", str(registry)]
    # one interpreter imports torch once and forks each run
    as_json, table, as_csv = run_forecast_many(
        [
            [*common, "--last-points", "48", "--output", "json"],
            [*common, "--origins", "5", "--stride", "12"],
            [*common, "--output", "csv"],
        ],
        watched["workdir"] / "backtests",
    )
    for result in (as_json, table, as_csv):
        assert result.returncode == 0, result.describe()
    answer = json.loads(as_json.stdout)
    expected = json.loads((registry / "watched" / "versions" / "1" / "manifest.json").read_text())["metrics"]["test"]
    for method in ("model", "naive", "seasonal_naive"):
        for metric in ("mae", "rmse", "smape", "mase"):
            assert answer["metrics"][method][metric] == pytest.approx(expected[method][metric], rel=2e-4)
    assert "seasonal naive MASE" in table.stdout and "all" in table.stdout
    rows = as_csv.stdout.splitlines()
    assert rows[0].startswith("series_id,origins,model_mae") and [r.split(",")[0] for r in rows[1:]] == [
        "a",
        "b",
        "all",
    ]
    assert not (registry / "watched" / "accuracy").exists(), "a backtest writes nothing"


def test_evaluate_records_production_on_fresh_data_and_the_api_and_metrics_show_it(
    watched: dict[str, Path], server_factory
) -> None:  # type: ignore[no-untyped-def]
    registry = watched["registry"]
    result = run_cli("evaluate", "--data", str(watched["changed"]), "--name", "watched", registry=registry)
    assert "loses to seasonal naive" in result.stdout, result.stdout
    record = _records(registry, "watched")[-1]
    assert record["version"] == 1 and record["status"] == "loses_to_seasonal_naive"
    assert record["data"]["n_series"] == 2
    # every origin after the training data that leaves a whole horizon: 100 - 12 + 1 per series
    assert record["data"]["windows"] == 2 * (LATER_POINTS - 12 + 1)
    assert record["ratio_to_seasonal_naive"] >= 1.0
    assert record["data"]["since"].startswith(
        str(pd.Timestamp("2024-01-01") + pd.Timedelta(hours=TRAINED_POINTS - 1)).replace(" ", "T")[:16]
    )

    server: Server = server_factory(registry, accuracy_refresh_s="0.2", reload_seconds="0.2")
    with server.client() as client:
        page = client.get("/v1/models/watched").json()
        assert page["accuracy"][-1]["record"] == record["record"]
        assert page["accuracy"][-1]["status"] == "loses_to_seasonal_naive"
        wait_until(
            lambda: (
                'forecast_production_accuracy{measure="ratio_to_seasonal_naive",model="watched"}'
                in client.get("/metrics").text
            ),
            timeout_s=10.0,
            what="the accuracy gauge",
        )


def test_retraining_happens_only_when_production_degraded(watched: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    registry = shutil.copytree(watched["registry"], tmp_path / "registry")
    holds = run_cli(
        "train",
        "--data",
        str(watched["holds"]),
        "--name",
        "watched",
        "--retrain",
        "--promote",
        "--if-degraded",
        "--quiet",
        registry=registry,
    )
    assert holds.stdout.startswith("not retraining: production (version 1) holds"), holds.stdout
    assert sorted(p.name for p in (registry / "watched" / "versions").iterdir()) == ["1"]

    changed = run_cli(
        "train",
        "--data",
        str(watched["changed"]),
        "--name",
        "watched",
        "--retrain",
        "--promote",
        "--if-degraded",
        "--quiet",
        registry=registry,
    )
    assert changed.stdout.startswith("retraining: production (version 1) no longer beats the seasonal naive"), (
        changed.stdout
    )
    assert sorted(p.name for p in (registry / "watched" / "versions").iterdir()) == ["1", "2"]
    assert json.loads((registry / "watched" / "aliases.json").read_text())["production"] == 2
    assert [r["status"] for r in _records(registry, "watched")][-2:] == ["holds", "loses_to_seasonal_naive"]
