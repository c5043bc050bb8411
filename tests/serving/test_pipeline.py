"""The pipeline's last stage and the response body: a request's forecasts come back in the posted
order with nested intervals that widen with each window's scale, computed for the whole request
at once, and with the model grid's ISO timestamps; a whole request runs through a real batcher."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from api.http.schemas import forecast_body
from forecast.errors import ValueOutOfRange
from forecast.model.config import input_channels
from forecast.model.intervals import interval_bounds
from forecast.model.network import build_network
from forecast.model.predictor import Predictor
from forecast.registry.manifest import Manifest
from forecast.series.features import feature_width
from forecast.serving.batcher import DynamicBatcher
from forecast.serving.pipeline import ForecastPipeline, WindowForecast, network_forward, window_forecast
from forecast.serving.requests import PreparedSeries
from tests.factories import Posted, make_manifest
from tests.support.requests import HORIZON, INPUT_SIZE, hourly_values, prepare


def assemble(
    manifest: Manifest, prepared: PreparedSeries, output: WindowForecast, levels: list[float]
) -> SimpleNamespace:
    """One series through the pipeline's last stage and the response body, as a client reads it."""
    result = ForecastPipeline(manifest, batcher=None).finish([prepared], [output], prepared.horizon, levels)  # type: ignore[arg-type]
    return SimpleNamespace(**forecast_body(manifest, result)["forecasts"][0])


def _assembled(
    manifest: Manifest, spread: float, levels: list[float], horizon: int = HORIZON
) -> tuple[PreparedSeries, SimpleNamespace]:
    prepared = prepare(manifest, hourly_values(8), start="2024-01-01T00:00:00", horizon=horizon)
    mean = np.array([10.0, 11.0, 12.5, 9.0], dtype=np.float32)
    return prepared, assemble(manifest, prepared, window_forecast(mean=mean, spread=spread), levels)


def test_intervals_nest_around_the_mean(manifest: Manifest) -> None:
    _, forecast = _assembled(manifest, spread=2.0, levels=[50.0, 80.0, 95.0])
    assert set(forecast.intervals) == {"50", "80", "95"}
    mean = np.array(forecast.mean)
    np.testing.assert_array_equal(mean, [10.0, 11.0, 12.5, 9.0])
    inner = (mean, mean)
    for level in ("50", "80", "95"):
        lower, upper = np.array(forecast.intervals[level]["lower"]), np.array(forecast.intervals[level]["upper"])
        assert np.all(lower < inner[0]) and np.all(upper > inner[1]), level
        np.testing.assert_allclose(mean - lower, upper - mean)  # symmetric
        inner = (lower, upper)


def test_interval_width_scales_with_the_window_spread(manifest: Manifest) -> None:
    _, narrow = _assembled(manifest, spread=1.0, levels=[80.0])
    _, wide = _assembled(manifest, spread=3.0, levels=[80.0])
    narrow_width = np.subtract(narrow.intervals["80"]["upper"], narrow.intervals["80"]["lower"])
    wide_width = np.subtract(wide.intervals["80"]["upper"], wide.intervals["80"]["lower"])
    np.testing.assert_allclose(wide_width, 3.0 * narrow_width)
    assert np.all(np.diff(narrow_width) > 0)  # the calibration's error grows with the step


def test_a_shorter_horizon_truncates_mean_and_intervals(manifest: Manifest) -> None:
    _, forecast = _assembled(manifest, spread=1.0, levels=[90.0], horizon=2)
    assert forecast.mean == [10.0, 11.0]
    assert len(forecast.timestamps) == 2
    assert len(forecast.intervals["90"]["lower"]) == len(forecast.intervals["90"]["upper"]) == 2


@pytest.mark.parametrize(("freq", "start"), [("h", "2024-01-01T00:00:00"), ("250ms", "2024-01-01T00:00:00.750")])
def test_timestamps_are_iso_strings_as_isoformat_writes_them(freq: str, start: str) -> None:
    manifest = make_manifest(freq=freq, features=[], input_size=INPUT_SIZE, horizon=HORIZON)
    prepared = prepare(manifest, hourly_values(8), start=start)
    forecast = assemble(
        manifest, prepared, window_forecast(mean=np.zeros(HORIZON, dtype=np.float32), spread=1.0), [80.0]
    )
    assert forecast.timestamps == [stamp.isoformat() for stamp in pd.DatetimeIndex(prepared.future)]
    assert all(isinstance(stamp, str) for stamp in forecast.timestamps)
    assert json.loads(json.dumps(forecast.timestamps)) == forecast.timestamps


def test_a_request_runs_through_the_batcher_and_keeps_its_order_and_per_series_intervals(manifest: Manifest) -> None:
    """Each series is forecast from its own window (a fake network: last value + step), and the
    vectorised intervals equal each series' own."""

    def forward(windows: object) -> list[WindowForecast]:
        return [window_forecast(mean=w.history[-1] + np.arange(HORIZON), spread=1.0 + i) for i, w in enumerate(windows)]  # type: ignore[attr-defined]

    async def run() -> tuple[object, list[float]]:
        with ThreadPoolExecutor(1) as executor:
            batcher = DynamicBatcher(forward, executor, max_batch_size=8, max_wait_ms=0.0, queue_limit=100)
            batcher.start()
            pipeline = ForecastPipeline(manifest, batcher)
            posted = [Posted(f"s{i}", [*hourly_values(7), float(100 * i)]) for i in range(3)]
            try:
                return await pipeline.forecast(posted, horizon=3, levels=[80.0, 95.0], timeout_s=10.0), [
                    100.0 * i for i in range(3)
                ]
            finally:
                await batcher.stop()

    result, lasts = asyncio.run(run())
    assert result.series_ids == ["s0", "s1", "s2"]  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.mean, [[last, last + 1, last + 2] for last in lasts])  # type: ignore[attr-defined]
    for row in range(3):
        lower, upper = interval_bounds(result.mean[row : row + 1], np.array([1.0 + row]), manifest.intervals, 80.0)  # type: ignore[attr-defined]
        np.testing.assert_allclose(result.intervals["80"].lower[row], lower[0])  # type: ignore[attr-defined]
        np.testing.assert_allclose(result.intervals["80"].upper[row], upper[0])  # type: ignore[attr-defined]


def _naive_pipeline(manifest: Manifest) -> ForecastPipeline:
    """The version's untrained network, which is exactly the naive forecast, behind a batcher."""
    network = build_network(manifest.network, input_channels(feature_width(manifest.features)))
    forward = network_forward(manifest, lambda: Predictor(network, manifest.scaling, torch.device("cpu")))
    batcher = DynamicBatcher(
        forward, ThreadPoolExecutor(max_workers=1), max_batch_size=8, max_wait_ms=0.0, queue_limit=64
    )
    return ForecastPipeline(manifest, batcher)


def _posted(values: list[float]) -> Posted:
    return Posted("a", values, start="2024-01-01T00:00:00")


def test_a_large_level_keeps_its_small_steps_through_the_pipeline(manifest: Manifest) -> None:
    """1e8 plus steps of 3.5: the float32 cast of the old path answered 100000008.0."""
    values = [1e8 + 3.5 * step for step in range(8)]

    async def run() -> list[float]:
        pipeline = _naive_pipeline(manifest)
        pipeline.batcher.start()
        try:
            result = await pipeline.forecast([_posted(values)], horizon=None, levels=[], timeout_s=5.0)
        finally:
            await pipeline.batcher.stop()
        return list(result.mean[0])

    assert asyncio.run(run()) == [values[-1]] * HORIZON


def test_a_forecast_that_overflows_is_an_error_for_its_series(manifest: Manifest) -> None:
    """Values at float32's edge with a huge spread: the intervals overflow. Never a 200 with nulls."""
    prepared = prepare(manifest, hourly_values(8), start="2024-01-01T00:00:00")
    output = window_forecast(mean=np.full(HORIZON, 3e38), spread=float("inf"))
    with pytest.raises(ValueOutOfRange, match="not finite") as refused:
        ForecastPipeline(manifest, batcher=None).finish([prepared], [output], HORIZON, [80.0])  # type: ignore[arg-type]
    assert refused.value.series_id == "a"
