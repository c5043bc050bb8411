"""Serving-side preparation of posted series: each is checked against the model version and
cut into the input window, with the same calendar features as in training and the covariates
the version reads (`forecast.serving.covariates`).

Validation reuses `forecast.series`; scaling happens in the predictor through
`forecast.model.encoding`, exactly as in training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime

from forecast.errors import FrequencyError, InvalidRequest, NonFiniteValues, ValueOutOfRange, excerpt
from forecast.model.config import NETWORK_MAX_VALUE
from forecast.model.intervals import check_levels
from forecast.registry.manifest import Manifest
from forecast.series.features import calendar_features, future_timestamps
from forecast.series.frequency import fixed_step_ns, normalize_freq, same_freq
from forecast.series.parsing import LAST_NS, instant_range_text, parse_iso_instant, parse_iso_timestamps, parse_values
from forecast.series.spacing import check_signal, grid_positions
from forecast.serving.covariates import NO_COVARIATES, PostedCovariates, covariate_window
from forecast.serving.placement import Placement


@dataclass(slots=True)
class Window:
    """One series' input window, as the network's forward pass takes it. A version without
    covariates has zero-size covariate arrays."""

    history: np.ndarray  # (L,) float64 raw values (float64 until scaled: see _window_values)
    features: np.ndarray  # (L + K, F) float32 calendar features of the window and the K known steps after it
    # The shared read-only empty arrays of a version without covariates, unless given.
    past: np.ndarray = field(default_factory=lambda: NO_COVARIATES.past)  # (L, P) float64 raw past covariates
    future: np.ndarray = field(default_factory=lambda: NO_COVARIATES.future)  # (L + K, Q) float64 raw future-known
    static: np.ndarray = field(default_factory=lambda: NO_COVARIATES.static)  # (S,) float64 codes, then raw numbers


@dataclass(slots=True)
class PreparedSeries:
    series_id: str
    window: Window
    last_ns: int  # the last posted instant, which with freq and horizon fixes the future ones
    freq: str
    horizon: int
    padded: int = 0  # points of the window before the series' first posted point
    missing: int = 0  # points of the window inside the series that are missing (gaps)

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


def _series_values(series_id: str, raw: Sequence[float | None], stamps: Callable[[], np.ndarray]) -> np.ndarray:
    """(T,) float64: the posted values, NaN where one is missing (null), each within the network's
    range. They stay float64 until they are scaled, so a level of 1e8 keeps its small steps."""
    values = np.asarray(raw, dtype=np.float64)  # null -> NaN
    if np.isinf(values).any():
        # raises with the timestamp of the first bad value
        return parse_values(series_id, raw, pd.DatetimeIndex(stamps()))
    too_large = np.abs(values) > NETWORK_MAX_VALUE
    if too_large.any():
        position = int(np.flatnonzero(too_large)[0])
        raise ValueOutOfRange(
            f"value {values[position]:g} at {pd.Timestamp(stamps()[position])} (position {position}) is "
            f"beyond what the network's float32 can hold (+-{NETWORK_MAX_VALUE:.3g}); rescale the series",
            series_id=series_id,
        )
    return values


def _check_window(series_id: str, history: np.ndarray, values: np.ndarray, freq: str) -> None:
    """Enough signal: the posted series within the missing bound, and an observed value in the window."""
    if np.isnan(values).any() or len(history) > len(values):
        check_signal(series_id, values, freq)
        if not np.isfinite(history).any():
            raise NonFiniteValues(
                f"has no observed value in its last {len(history)} points (the model's input size); post later values",
                series_id=series_id,
            )


def _check_future(series_id: str, last_ns: int, freq: str, horizon: int) -> None:
    """The last forecast step must be representable too (a window ending in 2262 would wrap)."""
    step = fixed_step_ns(freq)
    if step is not None:
        fits = last_ns + step * horizon <= LAST_NS
    else:
        try:
            fits = len(_future(last_ns, freq, horizon)) == horizon
        except (OutOfBoundsDatetime, OverflowError):
            fits = False
    if not fits:
        raise ValueOutOfRange(
            f"its forecast of {horizon} steps from {pd.Timestamp(last_ns)} runs past the last instant the service "
            f"can represent ({pd.Timestamp.max.floor('s')})",
            series_id=series_id,
        )


@dataclass(frozen=True, slots=True)
class _TimeAxis:
    """Where a posted series' values sit on the model's grid, and its last instant."""

    placement: Placement
    last_ns: int
    stamps: Callable[[], np.ndarray]  # the posted instants, built only for an error message


def _time_axis(
    manifest: Manifest, series_id: str, count: int, *, timestamps: list[str] | None, start: str | None
) -> _TimeAxis:
    """The `timestamps` form (checked, and placed on the grid, omitted instants being gaps) or the
    `start` form (contiguous by construction)."""
    size = manifest.input_size
    if timestamps is None:
        first = parse_iso_instant(series_id, str(start))
        last = _last_instant(series_id, first, count, manifest.freq, str(start))
        return _TimeAxis(Placement.contiguous(count, size), last, partial(_regular_stamps, first, count, manifest.freq))
    if len(timestamps) != count:
        raise InvalidRequest(f"{len(timestamps)} timestamps but {count} values", series_id=series_id)
    index = parse_iso_timestamps(series_id, timestamps)
    positions = grid_positions(series_id, index, manifest.freq)
    placement = Placement(positions, count if positions is None else int(positions[-1]) + 1, size)
    return _TimeAxis(placement, int(index.asi8[-1]), index.to_numpy)


@dataclass(slots=True)
class PlacedSeries:
    """A whole posted series on the model's grid, checked once: what a backtest cuts its windows
    from, origin by origin."""

    series_id: str
    grid: np.ndarray  # (G,) float64 values from the first posted point to the last, NaN where missing
    first_ns: int  # the instant of grid position 0
    placement: Placement  # where the posted points sit on the grid (for their covariates)


def place_series(
    manifest: Manifest,
    series_id: str,
    values: Sequence[float | None],
    *,
    timestamps: list[str] | None,
    start: str | None,
    freq: str | None,
) -> PlacedSeries:
    """The checks of `prepare_series` that concern the whole series (frequency, timestamps,
    values, enough signal), and the series laid on the grid."""
    _check_freq(manifest, series_id, freq)
    axis = _time_axis(manifest, series_id, len(values), timestamps=timestamps, start=start)
    posted = _series_values(series_id, values, axis.stamps)
    grid = axis.placement.on_grid(posted)
    check_signal(series_id, grid, manifest.freq)
    first_ns = (
        int(np.asarray(axis.stamps()[:1], dtype="datetime64[ns]").view(np.int64)[0]) if len(values) else axis.last_ns
    )
    return PlacedSeries(series_id, grid, first_ns, axis.placement)


def window_stamps(first_ns: int, count: int, freq: str) -> np.ndarray:
    """(count,) datetime64[ns]: `count` grid points of `freq` from the instant `first_ns`."""
    return _regular_stamps(pd.Timestamp(first_ns), count, freq)


def _check_freq(manifest: Manifest, series_id: str, freq: str | None) -> None:
    if freq is not None and not same_freq(normalize_freq(freq), manifest.freq):
        raise FrequencyError(
            f"frequency {excerpt(freq)} does not match the model's {manifest.freq!r}", series_id=series_id
        )


def prepare_series(
    manifest: Manifest,
    series_id: str,
    values: Sequence[float | None],
    *,
    timestamps: list[str] | None,
    start: str | None,
    freq: str | None,
    horizon: int,
    covariates: PostedCovariates | None = None,
) -> PreparedSeries:
    """Check one posted series against the model and cut its input window. Only the window
    (the last `input_size` grid points, and for a network that reads the horizon's future-known
    inputs the horizon's calendar and future covariates) is kept; the whole series is checked,
    with vectorised parses that cost about a millisecond per 10,000 points. Missing values (null),
    timestamps left out of the grid and the padding of a series shorter than the window are gaps,
    which the model fills and masks."""
    size = manifest.input_size
    _check_freq(manifest, series_id, freq)
    axis = _time_axis(manifest, series_id, len(values), timestamps=timestamps, start=start)
    placement, last = axis.placement, axis.last_ns
    _check_future(series_id, last, manifest.freq, horizon)
    network = manifest.network
    known = network.horizon if network.horizon_inputs else 0
    features = tuple(manifest.features)
    posted = _series_values(series_id, values, axis.stamps)
    history = placement.window(posted)
    _check_window(series_id, history, placement.on_grid(posted), manifest.freq)
    found = NO_COVARIATES
    if covariates is not None or not manifest.covariates.empty:
        found = covariate_window(
            manifest, series_id, covariates or PostedCovariates(), placement=placement, horizon=horizon
        )
    return PreparedSeries(
        series_id=series_id,
        window=Window(
            history=history,
            features=_window_features(
                first_of_window(series_id, last, size, manifest.freq), size + known, manifest.freq, features
            ),
            past=found.past,
            future=found.future,
            static=found.static,
        ),
        last_ns=last,
        freq=manifest.freq,
        horizon=horizon,
        padded=placement.padding,
        missing=int(np.isnan(history).sum()) - placement.padding,
    )


def _last_instant(series_id: str, first: pd.Timestamp, count: int, freq: str, start: str) -> int:
    """The last posted instant of a series given by its start: arithmetic for a fixed step (no
    array of stamps), the calendar's grid otherwise."""
    step = fixed_step_ns(freq)
    if step is not None:
        last = first.value + step * (count - 1)
        if last > LAST_NS:
            raise ValueOutOfRange(
                f"{count} points from {first} run past the last instant the service can represent "
                f"({pd.Timestamp.max.floor('s')})",
                series_id=series_id,
            )
        return int(last)
    try:
        grid = _regular_stamps(first, count, freq)
    except (OutOfBoundsDatetime, OverflowError) as exc:
        raise ValueOutOfRange(
            f"{count} points from {first} at {freq!r} run past the instants the service can represent "
            f"({instant_range_text()})",
            series_id=series_id,
        ) from exc
    if grid[0] != first.to_datetime64():
        raise FrequencyError(f"start {excerpt(start)} is not on the model's frequency {freq!r}", series_id=series_id)
    return int(grid[-1].view(np.int64))


def first_of_window(series_id: str, last_ns: int, size: int, freq: str) -> int:
    """The first instant of the window of `size` grid points ending at `last_ns` (before the
    series' first point when it is padded)."""
    try:
        return _window_start(last_ns, size, freq)
    except (OutOfBoundsDatetime, OverflowError) as exc:
        raise ValueOutOfRange(
            f"its window of {size} points before {pd.Timestamp(last_ns)} starts before the first instant the "
            f"service can represent ({instant_range_text()})",
            series_id=series_id,
        ) from exc


@lru_cache(maxsize=4096)
def _window_start(last_ns: int, size: int, freq: str) -> int:
    step = fixed_step_ns(freq)
    if step is not None:
        first = last_ns - step * (size - 1)
        if first < pd.Timestamp.min.value:
            raise OutOfBoundsDatetime(first)
        return first
    return int(pd.date_range(end=pd.Timestamp(last_ns), periods=size, freq=freq)[0].value)


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
