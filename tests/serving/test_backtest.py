"""The backtest through a served version's pipeline (engine, batcher, network) in-process: over a
version's own test block it reproduces the training job's test metrics, gaps included; its
origins, skips and limits are what the contract says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.errors import InvalidRequest, RequestTooLarge, SeriesTooShort
from forecast.registry.store import Registry
from forecast.serving.backtest import BacktestLimits, BacktestResult, BacktestSpec, backtest, origin_positions
from forecast.serving.engine import Engine
from forecast.settings import Settings
from tests.factories import Posted
from tests.support.cli import manifest, train
from tests.support.data import messy_frame, write_csv

HORIZON, TEST_SIZE = 12, 48  # tests.conftest.SMALL_MODEL_ARGS
LIMITS = BacktestLimits(max_windows=10_000, max_returned_values=1_000_000)


def posted_series(frame: pd.DataFrame) -> list[Posted]:
    """A long frame as a client posts it: timestamps, null where a value is missing."""
    series = []
    for series_id, rows in frame.groupby("series_id", sort=True):
        values = [None if np.isnan(v) else float(v) for v in rows["value"]]
        stamps = [t.isoformat() for t in pd.to_datetime(rows["timestamp"])]
        series.append(Posted(str(series_id), values, start=None, freq=None, timestamps=stamps))  # type: ignore[arg-type]
    return series


def run_backtest(root: Path, name: str, series: list[Posted], spec: BacktestSpec, limits: BacktestLimits = LIMITS):
    async def run() -> BacktestResult:
        engine = Engine(Registry(root), Settings(registry=str(root), device="cpu", reload_seconds=3600))
        await engine.start()
        try:
            async with engine.lease(name) as served:
                return await backtest(served.pipeline, series, spec, limits=limits, timeout_s=60.0)
        finally:
            await engine.stop()

    return asyncio.run(run())


def forecast_once(root: Path, name: str, series: Posted) -> np.ndarray:
    async def run() -> np.ndarray:
        engine = Engine(Registry(root), Settings(registry=str(root), device="cpu", reload_seconds=3600))
        await engine.start()
        try:
            async with engine.lease(name) as served:
                answer = await served.pipeline.forecast([series], horizon=None, levels=[], timeout_s=60.0)
                return answer.mean[0]
        finally:
            await engine.stop()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def messy_registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    workdir = tmp_path_factory.mktemp("backtest")
    frame = messy_frame()
    registry = workdir / "registry"
    train(write_csv(frame, workdir / "messy.csv"), registry, "messy", "--no-refit", "--force")  # serves what it scored
    return registry, frame


def test_a_backtest_over_the_test_block_equals_the_training_jobs_test_metrics(
    messy_registry: tuple[Path, pd.DataFrame],
) -> None:
    """Same origins (every one of the last 48 points), same forecasts through the serving path,
    same baselines and MASE scale: the manifest's numbers, with missing values and timestamps."""
    registry, frame = messy_registry
    posted = [s for s in posted_series(frame) if len(s.values) > HORIZON]  # 'd' has no test origin in the job either
    result = run_backtest(registry, "messy", posted, BacktestSpec(last_points=TEST_SIZE, levels=(80.0,)))
    expected = manifest(registry, "messy", 1)["metrics"]["test"]
    for method in ("model", "naive", "seasonal_naive"):
        for metric in ("mae", "mse", "rmse", "smape", "mase"):
            assert result.metrics[method][metric] == pytest.approx(expected[method][metric], rel=2e-4), (method, metric)
    assert 0.0 < result.coverage["80"] <= 1.0
    assert [s.series_id for s in result.series] == ["a", "b", "c"]
    assert len(result.series[0].origins) == TEST_SIZE - HORIZON + 1


def test_origins_step_back_from_the_last_whole_horizon_and_the_answer_names_them(
    messy_registry: tuple[Path, pd.DataFrame],
) -> None:
    registry, frame = messy_registry
    rows = frame[frame["series_id"] == "c"]  # 40 points, no gaps
    posted = posted_series(rows)
    result = run_backtest(registry, "messy", posted, BacktestSpec(origins=3, stride=5, return_forecasts=True))
    stamps = pd.to_datetime(rows["timestamp"]).tolist()
    assert result.series[0].origins == [stamps[i].isoformat() for i in (18, 23, 28)]
    assert result.windows == 3 and result.series[0].forecasts is not None
    assert result.series[0].forecasts.shape == (3, HORIZON)
    # one origin's forecast is the forecast of a request that posts the points before it
    truncated = Posted("c", posted[0].values[:23], start=None, freq=None, timestamps=posted[0].timestamps[:23])  # type: ignore[index]
    np.testing.assert_allclose(result.series[0].forecasts[1], forecast_once(registry, "messy", truncated), rtol=1e-9)
    np.testing.assert_array_equal(origin_positions(40, HORIZON, BacktestSpec(origins=3, stride=5)), [18, 23, 28])


def test_a_backtest_names_what_it_cannot_do(messy_registry: tuple[Path, pd.DataFrame]) -> None:
    registry, frame = messy_registry
    posted = posted_series(frame)
    with pytest.raises(SeriesTooShort, match=r"series 'd'.*5 points"):
        run_backtest(registry, "messy", posted, BacktestSpec())
    with pytest.raises(RequestTooLarge, match="FORECAST_MAX_BACKTEST_WINDOWS"):
        run_backtest(registry, "messy", posted[:1], BacktestSpec(origins=200), BacktestLimits(100, 1_000_000))
    with pytest.raises(RequestTooLarge, match="FORECAST_MAX_BACKTEST_VALUES"):
        run_backtest(
            registry, "messy", posted[:1], BacktestSpec(origins=20, return_forecasts=True), BacktestLimits(100, 100)
        )
    with pytest.raises(InvalidRequest, match="horizon 13 is out of range"):
        run_backtest(registry, "messy", posted[:1], BacktestSpec(horizon=13))
    with pytest.raises(InvalidRequest, match="at least the horizon"):
        run_backtest(registry, "messy", posted[:1], BacktestSpec(last_points=5))
