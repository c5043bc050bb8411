"""Serving-side preparation of posted series: each is checked against the model version and
cut into the input window, with the same calendar features as in training.

Validation reuses `forecast.series`; scaling happens in the predictor through
`forecast.model.encoding`, exactly as in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from forecast.errors import FrequencyError, InvalidRequest, SeriesTooShort
from forecast.model.intervals import check_levels
from forecast.registry.manifest import Manifest
from forecast.series.features import calendar_features, future_timestamps
from forecast.series.frequency import fixed_step_ns, normalize_freq, same_freq
from forecast.series.parsing import parse_instant, parse_timestamps_fast, parse_values
from forecast.series.spacing import check_spacing


@dataclass(slots=True)
class Window:
    """One series' input window, as the network's forward pass takes it."""

    history: np.ndarray  # (L,) float32 raw values
    features: np.ndarray  # (L, F) float32 calendar features


@dataclass(slots=True)
class PreparedSeries:
    series_id: str
    window: Window
    last_ns: int  # the last posted instant, which with freq and horizon fixes the future ones
    freq: str
    horizon: int

    @property
    def future(self) -> np.ndarray:
        """(horizon,) datetime64[ns]"""
        return _future(self.last_ns, self.freq, self.horizon)

    @property
    def future_iso(self) -> tuple[str, ...]:
        """The same instants as the response writes them."""
        return _future_iso(self.last_ns, self.freq, self.horizon)


def _regular_stamps(first: pd.Timestamp, periods: int, freq: str) -> np.ndarray:
    """(periods,) datetime64[ns] on the frequency's grid from `first` (rolled forward onto it
    for anchored frequencies such as W-SUN)."""
    step = fixed_step_ns(freq)
    if step is None:
        return pd.date_range(start=first, periods=periods, freq=freq).to_numpy()
    return (first.value + step * np.arange(periods, dtype=np.int64)).view("datetime64[ns]")


def _values(series_id: str, raw: list[float], stamps: Callable[[], np.ndarray]) -> np.ndarray:
    values = np.asarray(raw, dtype=np.float64)
    if not np.isfinite(values).all():
        # raises with the timestamp of the first bad value
        return parse_values(series_id, raw, pd.DatetimeIndex(stamps()))
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
    if len(values) < manifest.input_size:
        raise SeriesTooShort(
            f"has {len(values)} points but model needs at least {manifest.input_size} (its input size)",
            series_id=series_id,
        )
    if freq is not None and not same_freq(normalize_freq(freq), manifest.freq):
        raise FrequencyError(f"frequency {freq!r} does not match the model's {manifest.freq!r}", series_id=series_id)
    if timestamps is not None:
        if len(timestamps) != len(values):
            raise InvalidRequest(f"{len(timestamps)} timestamps but {len(values)} values", series_id=series_id)
        index = parse_timestamps_fast(series_id, timestamps)
        check_spacing(series_id, index, manifest.freq)
        stamps = index.asi8
        first_input, last = int(stamps[len(stamps) - manifest.input_size]), int(stamps[-1])
        series_values = _values(series_id, values, index.to_numpy)
    else:
        first = parse_instant(series_id, str(start))
        count, step = len(values), fixed_step_ns(manifest.freq)
        if step is None:  # anchored or calendar frequency: the grid comes from pandas
            grid = _regular_stamps(first, count, manifest.freq)
            if grid[0] != first.to_datetime64():
                raise FrequencyError(
                    f"start {start} is not on the model's frequency {manifest.freq!r}", series_id=series_id
                )
            first_input, last = int(grid[count - manifest.input_size].view(np.int64)), int(grid[-1].view(np.int64))
        else:  # a fixed step: the instants the window needs are arithmetic, no array of stamps
            first_input, last = first.value + step * (count - manifest.input_size), first.value + step * (count - 1)
        series_values = _values(series_id, values, lambda: _regular_stamps(first, count, manifest.freq))
    return PreparedSeries(
        series_id=series_id,
        window=Window(
            history=series_values[-manifest.input_size :].astype(np.float32),
            features=_window_features(first_input, manifest.input_size, manifest.freq, tuple(manifest.features)),
        ),
        last_ns=last,
        freq=manifest.freq,
        horizon=horizon,
    )


# Series posted together usually share their time axis, so their calendar features and future
# timestamps are the same arrays: compute each once. Keys are the window's first instant, its
# length and the frequency, which fix every timestamp of a regular window. Results are shared,
# so they are made read-only.
@lru_cache(maxsize=4096)
def _window_features(first_ns: int, length: int, freq: str, names: tuple[str, ...]) -> np.ndarray:
    stamps = _regular_stamps(pd.Timestamp(first_ns), length, freq)
    features = calendar_features(stamps, list(names))
    features.flags.writeable = False
    return features


@lru_cache(maxsize=4096)
def _future(last_ns: int, freq: str, horizon: int) -> np.ndarray:
    """(horizon,) datetime64[ns]: the steps after `last_ns`."""
    step = fixed_step_ns(freq)
    if step is None:
        future = future_timestamps(pd.Timestamp(last_ns), freq, horizon).to_numpy()
    else:
        future = (last_ns + step * np.arange(1, horizon + 1, dtype=np.int64)).view("datetime64[ns]")
    future.flags.writeable = False
    return future


def check_request(manifest: Manifest, horizon: int | None, levels: list[float]) -> int:
    """The horizon to serve; raises for a horizon or levels the version cannot honour."""
    served = manifest.horizon if horizon is None else horizon
    if not 1 <= served <= manifest.horizon:
        raise InvalidRequest(
            f"horizon {served} is out of range: model {manifest.name!r} forecasts 1 to {manifest.horizon} steps"
        )
    check_levels(levels, manifest.intervals)
    return served


@lru_cache(maxsize=4096)
def _future_iso(last_ns: int, freq: str, horizon: int) -> tuple[str, ...]:
    """`_future` as ISO 8601 strings, as Timestamp.isoformat() writes them (same cache key)."""
    future = _future(last_ns, freq, horizon)
    if (future.view(np.int64) % 1_000_000_000 == 0).all():
        return tuple(np.datetime_as_string(future, unit="s").tolist())
    return tuple(t.isoformat() for t in pd.DatetimeIndex(future))
