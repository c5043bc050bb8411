"""Rolling-origin evaluation (a backtest) of a served version on posted series.

Each series is parsed and checked once; every origin's window is cut from it as a forecast
request ending there would be (`prepare_series`: the same grid, padding, gaps, calendar features
and covariates), and every window of every origin goes through the version's batcher, many per
forward pass. The forecasts are scored as the training job scores its blocks
(`forecast.scoring`): the same baselines, metrics and MASE scale, so a backtest over a version's
own test block reproduces the job's test metrics.

An origin is the grid position of a forecast's first step. The last one leaves `horizon` actuals
after it; the others step back by `stride`. An origin whose window holds no observed value, or
whose horizon holds no observed actual, is skipped, as the training job skips it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime

from forecast.errors import InvalidRequest, RequestTooLarge, SeriesTooShort, ValueOutOfRange
from forecast.model.intervals import interval_bounds
from forecast.model.predictor import Prediction
from forecast.registry.manifest import Manifest
from forecast.scoring.baselines import History, filled_history, naive, seasonal_naive
from forecast.scoring.metrics import denominators_before, forecast_metrics
from forecast.series.features import calendar_features
from forecast.serving.batcher import ANYONE
from forecast.serving.covariates import PostedCovariates, covariate_window
from forecast.serving.pipeline import ForecastPipeline, PostedSeries, WindowForecast, covariates_of
from forecast.serving.placement import Placement
from forecast.serving.requests import PlacedSeries, Window, check_request, first_of_window, place_series, window_stamps

METHODS = ("model", "naive", "seasonal_naive")
MetricTable = dict[str, dict[str, float | None]]  # method -> metric -> value (None: undefined)


@dataclass(frozen=True, slots=True)
class BacktestSpec:
    """What a backtest asks for. `origins` and `last_points` are alternatives: the last K origins,
    or every origin whose forecast lies in the last N points (the training job's test block)."""

    horizon: int | None = None  # None: the model's
    levels: tuple[float, ...] = ()
    origins: int | None = None  # None (and no last_points): one origin, the last horizon points
    last_points: int | None = None
    stride: int = 1
    return_forecasts: bool = False
    since_ns: int | None = None  # only origins whose first step comes after this instant


@dataclass(frozen=True, slots=True)
class BacktestLimits:
    max_windows: int  # windows (series x origins) in one backtest
    max_returned_values: int  # forecast values an answer may carry when they are asked for


@dataclass(slots=True)
class SeriesBacktest:
    series_id: str
    origins: list[str]  # ISO 8601 instant of each origin's first forecast step
    metrics: MetricTable
    forecasts: np.ndarray | None = None  # (W_s, h) when asked for


@dataclass(slots=True)
class BacktestResult:
    horizon: int
    windows: int
    metrics: MetricTable  # over every window of every series, as the training job averages a block
    coverage: dict[str, float]  # level -> share of observed actuals inside its interval
    series: list[SeriesBacktest] = field(default_factory=list)


@dataclass(slots=True)
class _SeriesPlan:
    """One series' origins (grid positions) and the inputs its windows are cut from."""

    placed: PlacedSeries
    origins: np.ndarray  # (W_s,) int64
    covariates: PostedCovariates | None


def origin_positions(length: int, horizon: int, spec: BacktestSpec, earliest: int = 1) -> np.ndarray:
    """(W,) grid positions, ascending: the last leaves `horizon` actuals after it, the others step
    back by the stride, none before `earliest` (the first after `since`) nor before position 1 (a
    window needs a point before it). With `since` alone, every such origin."""
    last = length - horizon
    first = max(1, earliest)
    if spec.last_points is not None:
        first = max(first, length - spec.last_points)
    elif spec.origins is not None or spec.since_ns is None:
        first = max(first, last - ((spec.origins or 1) - 1) * spec.stride)
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(last, first - 1, -spec.stride, dtype=np.int64)[::-1].copy()


def check_spec(manifest: Manifest, spec: BacktestSpec) -> int:
    """The horizon to score; raises for parameters the version cannot honour."""
    horizon = check_request(manifest, spec.horizon, list(spec.levels))
    if spec.origins is not None and spec.last_points is not None:
        raise InvalidRequest("give either 'origins' or 'last_points', not both")
    if spec.stride < 1 or (spec.origins is not None and spec.origins < 1):
        raise InvalidRequest("'origins' and 'stride' must be at least 1")
    if spec.last_points is not None and spec.last_points < horizon:
        raise InvalidRequest(
            f"'last_points' ({spec.last_points}) must be at least the horizon ({horizon}) to hold one whole forecast"
        )
    return horizon


def _usable(grid: np.ndarray, origins: np.ndarray, size: int, horizon: int) -> np.ndarray:
    """The origins with an observed point in their window and one among their actuals."""
    observed = np.concatenate([[0], np.cumsum(np.isfinite(grid))])
    inputs = observed[origins] - observed[np.maximum(origins - size, 0)]
    actuals = observed[origins + horizon] - observed[origins]
    return origins[(inputs > 0) & (actuals > 0)]


def _as_arrays(posted: Mapping[str, Sequence[float | None]] | None) -> dict[str, Sequence[float | None]] | None:
    """Each covariate as a float64 array (null -> NaN) when it is a list of numbers, so that every
    origin slices a view instead of copying the list; anything else is left for the checks that
    name it."""
    if posted is None:
        return None
    arrays: dict[str, Sequence[float | None]] = {}
    for name, values in posted.items():
        try:
            arrays[name] = np.asarray(values, dtype=np.float64)  # type: ignore[assignment]  # an array is a sequence
        except (TypeError, ValueError, OverflowError):
            arrays[name] = values
    return arrays


def _covariates_of(series: PostedSeries) -> PostedCovariates | None:
    """The series' covariates as posted (`covariates_of`), each list as an array."""
    posted = covariates_of(series)
    if posted is None:
        return None
    return PostedCovariates(_as_arrays(posted.past), _as_arrays(posted.future), posted.static)


def plan_series(
    manifest: Manifest, series: Sequence[PostedSeries], spec: BacktestSpec, horizon: int, limits: BacktestLimits
) -> list[_SeriesPlan]:
    """Every series checked and its origins found; the window count checked against the limits
    before any window is cut."""
    plans = []
    total = 0
    for posted in series:
        placed = place_series(
            manifest, posted.id, posted.values, timestamps=posted.timestamps, start=posted.start, freq=posted.freq
        )
        covariates = _covariates_of(posted)
        if covariates is not None and covariates.future and placed.placement.positions is not None:
            raise InvalidRequest(
                "a backtest with future-known covariates needs every timestamp of the series: post a missing "
                "value as null instead of leaving its timestamp out",
                series_id=posted.id,
            )
        length = len(placed.grid)
        earliest = 1
        if spec.since_ns is not None:
            instants = window_stamps(placed.first_ns, length, manifest.freq).view(np.int64)
            earliest = int(np.searchsorted(instants, spec.since_ns, side="right"))
        candidates = origin_positions(length, horizon, spec, earliest)
        if len(candidates) == 0 and spec.since_ns is not None:
            raise SeriesTooShort(
                f"has fewer than {horizon} points after {pd.Timestamp(spec.since_ns)} for one forecast to score",
                series_id=posted.id,
            )
        if len(candidates) == 0:
            raise SeriesTooShort(
                f"has {length} points; a backtest at horizon {horizon} needs at least {horizon + 1}",
                series_id=posted.id,
            )
        origins = _usable(placed.grid, candidates, manifest.input_size, horizon)
        if len(origins) == 0:
            raise InvalidRequest(
                "no origin of the backtest has an observed value both in its window and in its horizon",
                series_id=posted.id,
            )
        total += len(origins)
        if total > limits.max_windows:
            raise RequestTooLarge(
                f"the backtest needs more than {limits.max_windows} windows (series x origins; "
                "FORECAST_MAX_BACKTEST_WINDOWS): ask for fewer origins, a larger stride or fewer series"
            )
        plans.append(_SeriesPlan(placed, origins, covariates))
    if spec.return_forecasts and total * horizon > limits.max_returned_values:
        raise RequestTooLarge(
            f"returning the forecasts of {total} windows x {horizon} steps exceeds {limits.max_returned_values} "
            "values (FORECAST_MAX_BACKTEST_VALUES): ask without return_forecasts, or for fewer origins"
        )
    return plans


def _span_features(manifest: Manifest, plan: _SeriesPlan, known: int) -> tuple[np.ndarray, int]:
    """Calendar features of every grid point any of the series' windows reads, computed once, and
    the grid position of the first of them (windows are slices of it)."""
    placed, size = plan.placed, manifest.input_size
    first_origin, last_origin = int(plan.origins[0]), int(plan.origins[-1])
    try:
        last_before = int(window_stamps(placed.first_ns, first_origin, manifest.freq)[-1].view(np.int64))
        start_ns = first_of_window(placed.series_id, last_before, size, manifest.freq)
        stamps = window_stamps(start_ns, last_origin - first_origin + size + known, manifest.freq)
    except (OutOfBoundsDatetime, OverflowError) as exc:
        raise ValueOutOfRange(
            "the backtest's windows reach past the instants the service can represent", series_id=placed.series_id
        ) from exc
    return calendar_features(stamps, list(manifest.features)), first_origin - size


def _history(grid: np.ndarray, origin: int, size: int) -> np.ndarray:
    if origin >= size:
        return grid[origin - size : origin]
    return np.concatenate([np.full(size - origin, np.nan), grid[:origin]])


def _covariates_at(manifest: Manifest, plan: _SeriesPlan, origin: int, horizon: int) -> tuple[np.ndarray, ...]:
    """The series' covariates as a request whose last posted point sits just before `origin`."""
    placed, covariates = plan.placed, plan.covariates or PostedCovariates()
    positions = placed.placement.positions
    count = origin if positions is None else int(np.searchsorted(positions, origin))
    placement = Placement(None if positions is None else positions[:count], origin, manifest.input_size)
    truncated = PostedCovariates(
        past=None if covariates.past is None else {name: v[:count] for name, v in covariates.past.items()},
        future=None
        if covariates.future is None
        else {name: v[: count + manifest.horizon] for name, v in covariates.future.items()},
        static=covariates.static,
    )
    found = covariate_window(manifest, placed.series_id, truncated, placement=placement, horizon=horizon)
    return found.past, found.future, found.static


def cut_windows(manifest: Manifest, plans: list[_SeriesPlan], horizon: int) -> list[Window]:
    """Every origin's window, series by series, as `prepare_series` cuts a request's."""
    size = manifest.input_size
    known = manifest.network.horizon if manifest.network.horizon_inputs else 0
    windows = []
    for plan in plans:
        features, features_start = _span_features(manifest, plan, known)
        with_covariates = plan.covariates is not None or not manifest.covariates.empty
        for origin in plan.origins.tolist():
            offset = origin - size - features_start
            window = Window(
                history=_history(plan.placed.grid, origin, size), features=features[offset : offset + size + known]
            )
            if with_covariates:
                window.past, window.future, window.static = _covariates_at(manifest, plan, origin, horizon)
            windows.append(window)
    return windows


@dataclass(slots=True)
class _Scored:
    """The backtest's arrays, every window of every series end to end."""

    actual: np.ndarray  # (W, h)
    forecasts: dict[str, np.ndarray]  # method -> (W, h)
    spread: np.ndarray  # (W,)
    denominators: np.ndarray  # (W,)
    rows: list[slice]  # each series' rows


def _score_arrays(
    manifest: Manifest, plans: list[_SeriesPlan], outputs: Sequence[WindowForecast], horizon: int
) -> _Scored:
    grids = [plan.placed.grid for plan in plans]
    lengths = np.array([len(grid) for grid in grids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate(grids)
    history, first_observed = History.complete(values), offsets[:-1]
    if not np.isfinite(values).all():
        history, first_observed = filled_history(values, offsets)
    counts = np.array([len(plan.origins) for plan in plans])
    series_index = np.repeat(np.arange(len(plans)), counts)
    origins = offsets[series_index] + np.concatenate([plan.origins for plan in plans])
    firsts = np.array([int(plan.origins[0]) for plan in plans], dtype=np.int64)
    denominators = denominators_before(values, offsets, firsts, manifest.mase_period)
    ends = np.cumsum(counts)
    model = Prediction.join(outputs, horizon)
    return _Scored(
        actual=values[origins[:, None] + np.arange(horizon)],
        forecasts={
            "model": model.mean,
            "naive": naive(history, origins, horizon),
            "seasonal_naive": seasonal_naive(
                history, origins, horizon, manifest.season_length, first_observed[series_index]
            ),
        },
        spread=model.spread,
        denominators=denominators[series_index],
        rows=[slice(int(end - count), int(end)) for end, count in zip(ends, counts, strict=True)],
    )


def _metrics(scored: _Scored, rows: slice) -> MetricTable:
    return {
        method: forecast_metrics(scored.actual[rows], scored.forecasts[method][rows], scored.denominators[rows])
        for method in METHODS
    }


def _origin_stamps(manifest: Manifest, plan: _SeriesPlan) -> list[str]:
    last = int(plan.origins[-1])
    stamps = pd.DatetimeIndex(window_stamps(plan.placed.first_ns, last + 1, manifest.freq)[plan.origins])
    return [stamp.isoformat() for stamp in stamps]


def score(
    manifest: Manifest, plans: list[_SeriesPlan], outputs: Sequence[WindowForecast], spec: BacktestSpec, horizon: int
) -> BacktestResult:
    scored = _score_arrays(manifest, plans, outputs, horizon)
    everything = slice(0, len(scored.actual))
    coverage = {}
    observed = np.isfinite(scored.actual)
    for level in spec.levels:
        lower, upper = interval_bounds(scored.forecasts["model"], scored.spread, manifest.intervals, level)
        covered = (scored.actual >= lower) & (scored.actual <= upper)
        coverage[f"{level:g}"] = float(covered[observed].mean())
    model = scored.forecasts["model"]
    if not np.isfinite(model).all():
        row = int(np.flatnonzero(~np.isfinite(model).all(axis=1))[0])
        plan = plans[int(np.searchsorted(np.cumsum([len(p.origins) for p in plans]), row, side="right"))]
        raise ValueOutOfRange(
            "the forecast is not finite (the series' values or their spread are too large for the network); "
            "rescale the series",
            series_id=plan.placed.series_id,
        )
    return BacktestResult(
        horizon=horizon,
        windows=len(model),
        metrics=_metrics(scored, everything),
        coverage=coverage,
        series=[
            SeriesBacktest(
                series_id=plan.placed.series_id,
                origins=_origin_stamps(manifest, plan),
                metrics=_metrics(scored, rows),
                forecasts=model[rows] if spec.return_forecasts else None,
            )
            for plan, rows in zip(plans, scored.rows, strict=True)
        ],
    )


async def backtest(
    pipeline: ForecastPipeline,
    series: Sequence[PostedSeries],
    spec: BacktestSpec,
    *,
    limits: BacktestLimits,
    timeout_s: float,
    admit: Callable[[int], Awaitable[None]] | None = None,
    caller: str = ANYONE,
) -> BacktestResult:
    """The version's rolling-origin evaluation on `series`. Parsing, cutting and scoring run on a
    worker thread, the forward passes on the batcher's: the event loop only waits. `admit` sees
    the window count before any window is cut (the API's rate limit counts windows); the
    windows take `caller`'s turns in the batcher."""
    manifest = pipeline.manifest
    horizon = check_spec(manifest, spec)
    plans = await asyncio.to_thread(plan_series, manifest, series, spec, horizon, limits)
    if admit is not None:
        await admit(sum(len(plan.origins) for plan in plans))
    windows = await asyncio.to_thread(cut_windows, manifest, plans, horizon)
    outputs = await pipeline.forecast_windows(windows, timeout_s, caller)
    return await asyncio.to_thread(score, manifest, plans, outputs, spec, horizon)


def result_body(manifest: Manifest, result: BacktestResult) -> dict[str, Any]:
    """A backtest as JSON: the 200 body of POST /v1/backtest (`api.http.schemas.BacktestResponse`) and
    what `forecast backtest --output json` prints."""
    return {
        "model": {"name": manifest.name, "version": manifest.version, "arch": manifest.arch},
        "horizon": result.horizon,
        "windows": result.windows,
        "metrics": result.metrics,
        "coverage": result.coverage,
        "series": [
            {
                "id": series.series_id,
                "metrics": series.metrics,
                "origins": series.origins,
                **({} if series.forecasts is None else {"forecasts": series.forecasts.tolist()}),
            }
            for series in result.series
        ],
    }
