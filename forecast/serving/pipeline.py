"""The serving pipeline of one model version: posted series -> windows -> the batcher -> the
network -> forecasts with intervals. The API route, the benchmarks and the tests all forecast
through `ForecastPipeline`, so the order of the stages lives here and nowhere else."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from forecast.errors import ValueOutOfRange
from forecast.model.encoding import RawWindows
from forecast.model.intervals import interval_bounds
from forecast.model.predictor import Prediction, Predictor
from forecast.registry.manifest import Manifest
from forecast.serving.batcher import ANYONE, DynamicBatcher
from forecast.serving.covariates import PostedCovariates
from forecast.serving.requests import PreparedSeries, Window, check_request, prepare_series

# The network's answer for one window: a single row of its batch's `Prediction`.
WindowForecast = Prediction[np.ndarray]


def window_forecast(mean: np.ndarray, spread: float) -> WindowForecast:
    """One window's forecast, (H,) and its scale, as the batcher hands it on (stand-in forwards)."""
    return Prediction(mean=np.asarray(mean)[None, :], spread=np.array([spread]))


# Runs on the inference thread: a batch of windows in, one forecast per window out.
Forward = Callable[[Sequence[Window]], Sequence[WindowForecast]]
# Builds a version's network on this process's device, from its verified weights.
BuildNetwork = Callable[[], Predictor]
# Builds the forward pass of a loaded version from its manifest: the network's (`network_forward`)
# in production. Only a forward that runs the network here calls `BuildNetwork`; one that runs
# in the inference process (`forecast.serving.remote`), or a benchmark's stand-in, never does.
ForwardFactory = Callable[[Manifest, BuildNetwork], Forward]


@runtime_checkable
class ReleasedOnUnload(Protocol):
    """A forward pass that holds something outside the worker (the inference process's copy of
    the version): the engine releases it once the version's batcher has stopped."""

    def release(self) -> None: ...


# A batch's inputs as arrays, in the order of `RawWindows`: history (B, L), calendar (B, L + K, F),
# past covariates (B, L, P), future-known covariates (B, L + K, Q), static covariates (B, S).
WindowArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _stacked(parts: list[np.ndarray]) -> np.ndarray:
    """np.stack, without visiting each window's array when they are empty (a version without
    covariates, every request): the batch's empty array has the same shape either way."""
    if parts[0].size == 0:
        return np.zeros((len(parts), *parts[0].shape), dtype=parts[0].dtype)
    return np.stack(parts)


def stack_windows(windows: Sequence[Window]) -> WindowArrays:
    """A batch's inputs as the network takes them, one array per input."""
    return (
        np.stack([window.history for window in windows]),
        np.stack([window.features for window in windows]),
        _stacked([window.past for window in windows]),
        _stacked([window.future for window in windows]),
        _stacked([window.static for window in windows]),
    )


def raw_windows(arrays: Sequence[np.ndarray]) -> RawWindows:
    """Stacked arrays as the predictor reads them (no copies: torch shares numpy's memory)."""
    history, calendar, past, future, static = (torch.from_numpy(np.asarray(array)) for array in arrays)
    return RawWindows(history=history, calendar=calendar, past=past, future=future, static=static)


def network_forward(manifest: Manifest, build: BuildNetwork) -> Forward:
    """The version's network over a batch of windows, in one forward pass."""
    predictor = build()

    def run(windows: Sequence[Window]) -> list[WindowForecast]:
        return predictor.predict(raw_windows(stack_windows(windows))).split()

    return run


class PostedSeries(Protocol):
    """One series as a client posts it (the API's `SeriesIn` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def values(self) -> Sequence[float | None]: ...
    @property
    def timestamps(self) -> list[str] | None: ...
    @property
    def start(self) -> str | None: ...
    @property
    def freq(self) -> str | None: ...
    @property
    def past_covariates(self) -> Mapping[str, Sequence[float | None]] | None: ...
    @property
    def future_covariates(self) -> Mapping[str, Sequence[float | None]] | None: ...
    @property
    def static_covariates(self) -> Mapping[str, str | float] | None: ...


@dataclass(slots=True)
class Bounds:
    lower: np.ndarray  # (S, h)
    upper: np.ndarray  # (S, h)


@dataclass(slots=True)
class RequestForecast:
    """A whole request's forecasts, one row per posted series, in the posted order."""

    series_ids: list[str]
    timestamps: list[tuple[str, ...]]  # ISO 8601, h per series
    mean: np.ndarray  # (S, h) on the original scale
    intervals: dict[str, Bounds]  # level as written ("80", "97.5") -> bounds
    padded: list[int]  # per series: points of the window before its first posted point
    missing: list[int]  # per series: points of the window inside the series that are missing


# Windows submitted to the batcher at once by a bulk caller (a backtest, batch scoring), and how
# many such chunks wait at a time: the batcher interleaves other clients' forecasts between them,
# and its queue limit is never reached by one bulk caller alone.
_CHUNK_WINDOWS = 512
_CHUNKS_IN_FLIGHT = 2

# Requests with more series than this are prepared off the event loop.
_PREPARE_INLINE_SERIES = 32


def _check_finite(prepared: list[PreparedSeries], mean: np.ndarray, intervals: dict[str, Bounds]) -> None:
    """A forecast that overflowed is an error for its series, never a 200 (JSON would write
    the inf as null)."""
    finite = np.isfinite(mean).all(axis=1)  # (S,)
    for bounds in intervals.values():
        finite &= np.isfinite(bounds.lower).all(axis=1) & np.isfinite(bounds.upper).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueOutOfRange(
            "the forecast is not finite (the series' values or their spread are too large for the network); "
            "rescale the series",
            series_id=prepared[row].series_id,
        )


def covariates_of(series: PostedSeries) -> PostedCovariates | None:
    """The series' covariates as posted; None when it posts none (most series of most requests)."""
    past, future, static = series.past_covariates, series.future_covariates, series.static_covariates
    if past is None and future is None and static is None:
        return None
    return PostedCovariates(past, future, static)


class ForecastPipeline:
    def __init__(self, manifest: Manifest, batcher: DynamicBatcher[Window, WindowForecast]) -> None:
        self.manifest = manifest
        self.batcher = batcher

    def prepare(self, series: Sequence[PostedSeries], horizon: int) -> list[PreparedSeries]:
        """Every series checked against the version and cut into its window; the first bad one
        raises, naming itself, before anything is queued."""
        return [
            prepare_series(
                self.manifest,
                s.id,
                s.values,
                timestamps=s.timestamps,
                start=s.start,
                freq=s.freq,
                horizon=horizon,
                covariates=covariates_of(s),
            )
            for s in series
        ]

    async def forecast(
        self,
        series: Sequence[PostedSeries],
        *,
        horizon: int | None,
        levels: list[float],
        timeout_s: float,
        caller: str = ANYONE,
    ) -> RequestForecast:
        """`caller` takes its turn in the batcher beside the others (forecast/serving/batcher.py)."""
        served_horizon = check_request(self.manifest, horizon, levels)
        self.batcher.check_room(len(series), caller)  # a request that cannot queue is not prepared
        if len(series) > _PREPARE_INLINE_SERIES:
            # A bulk request's parsing takes tens of milliseconds: on a worker thread the event
            # loop keeps answering other clients (and /healthz) meanwhile.
            prepared = await asyncio.to_thread(self.prepare, series, served_horizon)
        else:
            prepared = self.prepare(series, served_horizon)
        outputs = await self.batcher.submit([p.window for p in prepared], timeout_s=timeout_s, caller=caller)
        return self.finish(prepared, outputs, served_horizon, levels)

    async def forecast_windows(
        self, windows: Sequence[Window], timeout_s: float, caller: str = ANYONE
    ) -> list[WindowForecast]:
        """Many windows through the batcher in chunks, in order: a bulk caller's path."""
        batcher = self.batcher
        size = max(1, min(_CHUNK_WINDOWS, batcher.caller_limit // (2 * _CHUNKS_IN_FLIGHT)))
        gate = asyncio.Semaphore(_CHUNKS_IN_FLIGHT)

        async def run(chunk: Sequence[Window]) -> list[WindowForecast]:
            async with gate:
                return await batcher.submit(chunk, timeout_s=timeout_s, caller=caller)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(run(windows[i : i + size])) for i in range(0, len(windows), size)]
        return [output for task in tasks for output in task.result()]

    def finish(
        self, prepared: list[PreparedSeries], outputs: Sequence[WindowForecast], horizon: int, levels: list[float]
    ) -> RequestForecast:
        """The request's forecasts as one (S, h) block, and every interval level computed for
        all of its series in one vectorised call."""
        forecast = Prediction.join(outputs, horizon)
        mean = forecast.mean  # (S, h)
        intervals = {}
        if levels:  # most requests ask for none: this runs per request, on the event loop
            for level in levels:
                lower, upper = interval_bounds(mean, forecast.spread, self.manifest.intervals, level)
                intervals[f"{level:g}"] = Bounds(lower=lower, upper=upper)
        _check_finite(prepared, mean, intervals)
        return RequestForecast(
            series_ids=[p.series_id for p in prepared],
            timestamps=[p.future_iso for p in prepared],
            mean=mean,
            intervals=intervals,
            padded=[p.padded for p in prepared],
            missing=[p.missing for p in prepared],
        )
