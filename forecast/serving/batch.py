"""Batch scoring (`forecast predict`): every series of a file forecast through the serving
pipeline of a version loaded in this process (`forecast.serving.local`), in large batches on the
GPU when there is one, into one long table: the id, the forecast's timestamps, the mean and the
interval bounds per level, named as the Python client and statsforecast name them
(`<model>`, `<model>-lo-80`, `<model>-hi-80`).

A series that cannot be forecast (too little signal, bad values, a covariate missing) is left
out with its reason and the others are still scored. Series are prepared and forecast a chunk at
a time, so memory follows the chunk, not the file.

For a version that reads future-known covariates, each series' rows after its last value (the
value left empty) carry those covariates over the horizon, as the dashboard's CSV does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from forecast.errors import ForecastError, ValueOutOfRange, excerpt
from forecast.registry.manifest import Manifest
from forecast.registry.store import Registry
from forecast.serving.local import DataSeries, load_for_version, posted_series, served_here
from forecast.serving.pipeline import ForecastPipeline, RequestForecast
from forecast.serving.requests import PreparedSeries, check_request
from forecast.settings import Settings

# Series prepared and forecast together: large enough for full forward passes, small enough that
# their windows (the input size of floats each, and their calendar features) stay a few MB.
CHUNK_SERIES = 2048


@dataclass(frozen=True, slots=True)
class ScoringRequest:
    name: str
    data: str
    version: int | None = None  # None: production
    levels: tuple[float, ...] = (80.0, 95.0)
    static_data: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    series_id: str
    reason: str


@dataclass(slots=True)
class BatchForecasts:
    manifest: Manifest
    frame: pd.DataFrame  # the long table, series in the file's order
    failures: list[Failure] = field(default_factory=list)
    series: int = 0  # series forecast
    seconds: float = 0.0  # loading the version and forecasting, not reading the file


def forecast_columns(name: str, levels: tuple[float, ...] | list[float]) -> list[str]:
    """The value columns of a forecast table: the mean, then each level's bounds."""
    return [name, *(f"{name}-{side}-{level:g}" for level in levels for side in ("lo", "hi"))]


def _failure(error: ForecastError, series_id: str) -> Failure:
    """The error's message without the "series 'x': " its text starts with."""
    text = str(error)
    prefix = f"series {excerpt(series_id)}: "
    return Failure(series_id, text.removeprefix(prefix))


def _with_future_rows(series: DataSeries) -> DataSeries:
    """A series whose future-known covariates run past its last value: the values up to the last
    observed one, the past covariates alike, the future-known ones over every row."""
    values = np.asarray(series.values, dtype=np.float64)
    observed = np.flatnonzero(np.isfinite(values))
    end = int(observed[-1]) + 1 if len(observed) else len(values)
    if end == len(values):
        return series
    past = None if series.past_covariates is None else {n: v[:end] for n, v in series.past_covariates.items()}
    return replace(series, values=values[:end], past_covariates=past)  # type: ignore[arg-type]


def _table(
    manifest: Manifest, result: RequestForecast, prepared: list[PreparedSeries], levels: tuple[float, ...]
) -> pd.DataFrame:
    horizon = result.mean.shape[1]
    training = manifest.training
    columns: dict[str, object] = {
        training.id_column: np.repeat(np.array(result.series_ids, dtype=object), horizon),
        training.timestamp_column: np.concatenate([p.future for p in prepared]),
    }
    names = forecast_columns(manifest.name, levels)
    columns[names[0]] = result.mean.reshape(-1)
    for index, level in enumerate(levels):
        bounds = result.intervals[f"{level:g}"]
        columns[names[1 + 2 * index]] = bounds.lower.reshape(-1)
        columns[names[2 + 2 * index]] = bounds.upper.reshape(-1)
    return pd.DataFrame(columns)


def _finished(
    pipeline: ForecastPipeline,
    prepared: list[PreparedSeries],
    outputs: list,
    levels: tuple[float, ...],  # type: ignore[type-arg]
) -> tuple[list[PreparedSeries], RequestForecast | None, list[Failure]]:
    """The chunk's forecasts; a series whose forecast is not finite is left out by itself."""
    horizon = pipeline.manifest.horizon
    try:
        return prepared, pipeline.finish(prepared, outputs, horizon, list(levels)), []
    except ValueOutOfRange:
        kept, kept_outputs, failures = [], [], []
        for one, output in zip(prepared, outputs, strict=True):
            try:
                pipeline.finish([one], [output], horizon, list(levels))
            except ValueOutOfRange as error:
                failures.append(_failure(error, one.series_id))
                continue
            kept.append(one)
            kept_outputs.append(output)
        if not kept:
            return [], None, failures
        return kept, pipeline.finish(kept, kept_outputs, horizon, list(levels)), failures


def _prepare_each(
    pipeline: ForecastPipeline, chunk: list[DataSeries], horizon: int
) -> tuple[list[PreparedSeries], list[Failure]]:
    prepared, failures = [], []
    for one in chunk:
        try:
            prepared.extend(pipeline.prepare([one], horizon))
        except ForecastError as error:
            failures.append(_failure(error, one.id))
    return prepared, failures


async def _score(
    pipeline: ForecastPipeline,
    series: list[DataSeries],
    levels: tuple[float, ...],
    timeout_s: float,
    advance: Callable[[int], None],
) -> tuple[list[pd.DataFrame], list[Failure]]:
    manifest = pipeline.manifest
    horizon = check_request(manifest, None, list(levels))
    tables, failures = [], []
    for start in range(0, len(series), CHUNK_SERIES):
        chunk = series[start : start + CHUNK_SERIES]
        prepared, refused = await asyncio.to_thread(_prepare_each, pipeline, chunk, horizon)
        failures.extend(refused)
        if prepared:
            outputs = await pipeline.forecast_windows([p.window for p in prepared], timeout_s)
            kept, result, lost = _finished(pipeline, prepared, outputs, levels)
            failures.extend(lost)
            if result is not None:
                tables.append(_table(manifest, result, kept, levels))
        advance(len(chunk))
    return tables, failures


def forecast_file(
    registry: Registry, settings: Settings, request: ScoringRequest, advance: Callable[[int], None] = lambda _: None
) -> BatchForecasts:
    """Every series of the file forecast by the version (production by default), from the end
    of its data, over the version's horizon."""
    version = registry.resolve(request.name, request.version)
    manifest = registry.manifest(request.name, version)
    dataset = load_for_version(request.data, manifest, request.static_data, leave_out_bad=True)
    failures = [_failure(error, error.series_id or "") for error in dataset.left_out]
    series = posted_series(dataset, manifest)
    if manifest.covariates.future:
        series = [_with_future_rows(one) for one in series]
    started = time.perf_counter()

    async def run() -> tuple[list[pd.DataFrame], list[Failure]]:
        async with served_here(registry, settings, request.name, version) as pipeline:
            return await _score(pipeline, series, request.levels, settings.request_timeout_s, advance)

    tables, lost = asyncio.run(run())
    columns = [manifest.training.id_column, manifest.training.timestamp_column]
    columns += forecast_columns(manifest.name, request.levels)
    frame = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    failures += lost
    return BatchForecasts(
        manifest=manifest,
        frame=frame,
        failures=failures,
        series=len(series) - len(lost),
        seconds=time.perf_counter() - started,
    )
