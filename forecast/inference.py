"""Serving-side preparation of posted series and assembly of forecasts, per model version.

Validation and windowing reuse `forecast.data` and `forecast.features`; scaling happens in the
predictor through `forecast.preprocess`, exactly as in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.batcher import BatchInput, BatchOutput
from forecast.data import check_order, check_regular, normalize_freq, parse_timestamps, parse_values, same_freq
from forecast.errors import FrequencyError, InvalidRequest, SeriesTooShort
from forecast.features import calendar_features, future_timestamps
from forecast.intervals import check_levels, interval_bounds
from forecast.manifest import Manifest


@dataclass(slots=True)
class PreparedSeries:
    series_id: str
    window: BatchInput
    future: pd.DatetimeIndex  # (horizon,)


@dataclass(slots=True)
class SeriesForecast:
    series_id: str
    timestamps: list[str]
    mean: list[float]
    intervals: dict[str, dict[str, list[float]]]


def _values(series_id: str, raw: list[float], stamps: pd.DatetimeIndex | None) -> np.ndarray:
    values = np.asarray(raw, dtype=np.float64)
    if not np.isfinite(values).all():
        return parse_values(series_id, raw, stamps)  # raises with the position of the first bad value
    return values


def prepare_series(
    manifest: Manifest,
    series_id: str,
    values: list[float],
    *,
    timestamps: list[str] | None,
    start: str | None,
    freq: str | None,
    horizon: int,
) -> PreparedSeries:
    """Check one posted series against the model and cut its input window."""
    if freq is not None and not same_freq(normalize_freq(freq), manifest.freq):
        raise FrequencyError(f"frequency {freq!r} does not match the model's {manifest.freq!r}", series_id=series_id)
    if timestamps is not None:
        if len(timestamps) != len(values):
            raise InvalidRequest(f"{len(timestamps)} timestamps but {len(values)} values", series_id=series_id)
        stamps = parse_timestamps(series_id, timestamps)
        check_order(series_id, stamps)
        check_regular(series_id, stamps, manifest.freq)
    else:
        first = parse_timestamps(series_id, [start])[0]
        stamps = pd.date_range(start=first, periods=len(values), freq=manifest.freq)
        if stamps[0] != first:
            raise FrequencyError(f"start {start} is not on the model's frequency {manifest.freq!r}", series_id=series_id)
    series_values = _values(series_id, values, stamps)
    if len(series_values) < manifest.input_size:
        raise SeriesTooShort(
            f"has {len(series_values)} points but model needs at least {manifest.input_size} (its input size)",
            series_id=series_id,
        )
    window = slice(len(series_values) - manifest.input_size, None)
    return PreparedSeries(
        series_id=series_id,
        window=BatchInput(
            history=series_values[window].astype(np.float32),
            features=calendar_features(stamps[window], manifest.features),
        ),
        future=future_timestamps(stamps[-1], manifest.freq, horizon),
    )


def check_request(manifest: Manifest, horizon: int | None, levels: list[float]) -> int:
    """The horizon to serve; raises for a horizon or levels the version cannot honour."""
    served = manifest.horizon if horizon is None else horizon
    if not 1 <= served <= manifest.horizon:
        raise InvalidRequest(f"horizon {served} is out of range: model {manifest.name!r} forecasts 1 to {manifest.horizon} steps")
    check_levels(levels, manifest.intervals)
    return served


def assemble(manifest: Manifest, prepared: PreparedSeries, output: BatchOutput, levels: list[float]) -> SeriesForecast:
    horizon = len(prepared.future)
    mean = output.mean[None, :horizon].astype(np.float64)  # (1, h)
    intervals = {}
    for level in levels:
        lower, upper = interval_bounds(mean, np.array([output.spread]), manifest.intervals, level)
        intervals[f"{level:g}"] = {"lower": lower[0].tolist(), "upper": upper[0].tolist()}
    return SeriesForecast(
        series_id=prepared.series_id,
        timestamps=[t.isoformat() for t in prepared.future],
        mean=mean[0].tolist(),
        intervals=intervals,
    )
