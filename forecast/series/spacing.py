"""A series' timestamps on the grid of its frequency: strictly increasing, on the grid, with the
missing ones placed as gaps; and the inference of the frequency when none is given, which
tolerates gaps (a few missing days, weekends absent from business-day data).

A series may miss at most `MAX_MISSING_FRACTION` of the points between its first and last
observed value; beyond that it has too little signal, and the error says how much is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime, OutOfBoundsTimedelta

from forecast.errors import BadTimestamps, FrequencyError, TooLittleSignal
from forecast.series.frequency import fixed_step_ns, normalize_freq, same_freq


def _offsets(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """(T,) uint64 nanoseconds of sorted timestamps since the first. In uint64, since two instants
    of pandas' range (1677 to 2262) can be further apart than int64 nanoseconds hold (292 years):
    the difference wraps back to the right value."""
    stamps = timestamps.asi8.view(np.uint64)
    return stamps - stamps[0]


def _steps(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """(T - 1,) uint64 nanoseconds between consecutive sorted timestamps (see `_offsets`)."""
    return np.diff(_offsets(timestamps))


def _duration(nanoseconds: int) -> str:
    """A step as a user reads it; a span beyond what a Timedelta holds, in days."""
    try:
        return str(pd.Timedelta(nanoseconds))
    except (OverflowError, ValueError):
        return f"{nanoseconds / 86_400e9:.0f} days"


def check_order(series_id: str, timestamps: pd.DatetimeIndex) -> None:
    stamps = timestamps.asi8
    later = stamps[1:] > stamps[:-1]  # compared, not subtracted: a difference can overflow int64
    if not later.all():
        position = int(np.flatnonzero(~later)[0]) + 1
        kind = "duplicate" if stamps[position] == stamps[position - 1] else "unsorted"
        raise BadTimestamps(
            f"{kind} timestamp {timestamps[position]} at position {position} "
            f"(after {timestamps[position - 1]}); timestamps must be strictly increasing",
            series_id=series_id,
        )


MAX_MISSING_FRACTION = 0.9
_RUN = 5  # consecutive timestamps that name a frequency when the whole series cannot
_RUNS_TRIED = 24


def _run_frequencies(timestamps: pd.DatetimeIndex) -> list[str]:
    """Frequencies pandas infers from short runs spread over the series: with gaps, the runs
    between them still show the grid. Daily data without weekends also offers business days."""
    count = len(timestamps)
    found: dict[str, None] = {}
    if count >= _RUN:
        starts = np.unique(np.linspace(0, count - _RUN, num=min(_RUNS_TRIED, count - _RUN + 1)).astype(int))
        for start in starts:
            freq = pd.infer_freq(timestamps[start : start + _RUN])
            if freq is not None:
                found[normalize_freq(freq)] = None
    if any(same_freq(freq, "D") for freq in found) and not (timestamps.dayofweek >= 5).any():
        found["B"] = None
    return list(found)


def _smallest_step(timestamps: pd.DatetimeIndex) -> str:
    """The smallest step between timestamps, as a fixed frequency: a short series' grid."""
    smallest = int(_steps(timestamps).min())
    try:
        step = pd.Timedelta(smallest)
    except (OverflowError, ValueError):
        return "D"  # centuries apart: no grid a model could read; the missing bound refuses it
    return normalize_freq(str(pd.tseries.frequencies.to_offset(step).freqstr))


def _calendar_grid(timestamps: pd.DatetimeIndex, freq: str) -> tuple[pd.DatetimeIndex, int]:
    """A calendar frequency's grid from the first timestamp to the last, built to at most the
    points the missing bound allows for this many timestamps (pandas builds business hours at
    about 60,000 points a second, and a hostile series can span centuries); and the grid's size,
    estimated from the built part's average step where the grid goes further."""
    limit = int(len(timestamps) / (1 - MAX_MISSING_FRACTION)) + 2
    try:
        grid = pd.date_range(start=timestamps[0], periods=limit, freq=freq)
    except (OutOfBoundsDatetime, OutOfBoundsTimedelta):
        # The bound reaches past pandas' last instant (2262), so the last timestamp comes before
        # it: the grid up to that timestamp is the shorter one (a long quarterly series from 1956).
        grid = pd.date_range(start=timestamps[0], end=timestamps[-1], freq=freq)
    if grid[-1] >= timestamps[-1]:
        grid = grid[grid <= timestamps[-1]]
        return grid, len(grid)
    average = int(_offsets(grid)[-1]) / (len(grid) - 1)
    return grid, max(limit + 1, int(int(_offsets(timestamps)[-1]) / average) + 1)


def _grid_size(timestamps: pd.DatetimeIndex, freq: str) -> int | None:
    """Points of `freq`'s grid from the first timestamp to the last when every timestamp lies on
    it; None when one does not. Never builds a grid larger than the bound allows."""
    step = fixed_step_ns(freq)
    if step is not None:
        offsets = _offsets(timestamps)
        if (offsets % np.uint64(step)).any():
            return None
        return int(offsets[-1] // np.uint64(step)) + 1
    try:
        grid, size = _calendar_grid(timestamps, freq)
    except (ValueError, OverflowError):
        return None
    if len(grid) < size:  # more points than the missing bound allows: no need to place them
        return size
    if len(grid) == 0 or grid[0] != timestamps[0] or grid.get_indexer(timestamps).min() < 0:
        return None
    return len(grid)


def infer_freq(series_id: str, timestamps: pd.DatetimeIndex) -> str:
    """The series' frequency: pandas' inference, or with gaps the smallest grid that holds every
    timestamp among the frequencies of its gap-free runs."""
    if len(timestamps) < 3:
        raise FrequencyError(
            f"cannot infer a frequency from {len(timestamps)} timestamp(s); give the frequency explicitly",
            series_id=series_id,
        )
    check_order(series_id, timestamps)  # inference needs sorted, unique timestamps to be meaningful
    freq = pd.infer_freq(timestamps)
    if freq is None:
        runs = _run_frequencies(timestamps)
        sizes = {
            candidate: size
            for candidate in (runs or [_smallest_step(timestamps)])
            if (size := _grid_size(timestamps, candidate)) is not None
            and size * (1 - MAX_MISSING_FRACTION) <= len(timestamps)
        }
        if sizes:
            return min(sizes, key=lambda candidate: sizes[candidate])
        if runs:  # the grid its regular stretches show: name the first timestamp off it
            check_regular(series_id, timestamps, runs[0])
    if freq is None:
        # Name where the spacing breaks, which is what the user has to fix.
        steps = _steps(timestamps)
        usual = np.bincount(np.unique(steps, return_inverse=True)[1]).argmax()
        usual_step = np.unique(steps)[usual]
        position = int(np.flatnonzero(steps != usual_step)[0]) + 1
        raise FrequencyError(
            f"irregular timestamps: cannot infer a frequency; the spacing changes at {timestamps[position]} "
            f"(position {position}, {_duration(int(steps[position - 1]))} after the previous one instead of "
            f"{_duration(int(usual_step))}); give the frequency explicitly or fix the gaps",
            series_id=series_id,
        )
    return normalize_freq(freq)


def grid_positions(series_id: str, timestamps: pd.DatetimeIndex, freq: str) -> np.ndarray | None:
    """Where each timestamp sits on the grid of `freq` from the first one: None when the series is
    regular (no gaps), else (T,) int64 positions, the missing timestamps being gaps. Refuses
    timestamps off the grid, out of order, or more missing points than `MAX_MISSING_FRACTION`."""
    step = fixed_step_ns(freq)
    check_order(series_id, timestamps)
    if step is not None and len(timestamps) > 1 and (_steps(timestamps) == step).all():
        return None
    if len(timestamps) >= 3:
        inferred = pd.infer_freq(timestamps)
        if inferred is not None and same_freq(normalize_freq(inferred), freq):
            return None
    size = _grid_size(timestamps, freq)
    if size is None:
        check_regular(series_id, timestamps, freq)  # names the first timestamp off the grid
        return None
    if size == len(timestamps):
        return None
    _check_missing(series_id, size - len(timestamps), size, freq)
    if step is not None:
        return (_offsets(timestamps) // np.uint64(step)).astype(np.int64)
    return np.asarray(pd.date_range(start=timestamps[0], periods=size, freq=freq).get_indexer(timestamps))


def _check_missing(series_id: str, missing: int, size: int, freq: str) -> None:
    if missing > MAX_MISSING_FRACTION * size:
        raise TooLittleSignal(
            f"too little signal: {missing} of the {size} points on its {freq!r} grid are missing "
            f"({100 * missing / size:.0f}%; at most {100 * MAX_MISSING_FRACTION:.0f}% may be); "
            "check the frequency, or drop the series",
            series_id=series_id,
        )


def check_signal(series_id: str, values: np.ndarray, freq: str) -> None:
    """At least one observed value, and at most MAX_MISSING_FRACTION missing between the first
    observed value and the last."""
    observed = np.flatnonzero(np.isfinite(values))
    if len(observed) == 0:
        raise TooLittleSignal("has no observed value (every value is missing)", series_id=series_id)
    span = int(observed[-1] - observed[0]) + 1
    _check_missing(series_id, span - len(observed), span, freq)


def check_regular(series_id: str, timestamps: pd.DatetimeIndex, freq: str) -> None:
    """Refuses, naming it, the first timestamp that is not on `freq`'s grid from the first one
    (sorted, unique timestamps; missing ones are gaps, not errors)."""
    step = fixed_step_ns(freq)
    if step is not None:
        off = _offsets(timestamps) % np.uint64(step) != 0
    else:
        size = 0
        try:
            grid, size = _calendar_grid(timestamps, freq)
        except (ValueError, OverflowError):
            grid = pd.DatetimeIndex([])
        reached = timestamps <= grid[-1] if len(grid) else np.zeros(len(timestamps), dtype=bool)
        off = (grid.get_indexer(timestamps) < 0) & reached
        if len(grid) == 0 or grid[0] != timestamps[0]:
            off[0] = True
        if not off.any() and not reached.all():  # on the grid as far as the bound lets it be built
            _check_missing(series_id, size - len(timestamps), size, freq)
    if off.any():
        position = int(np.flatnonzero(off)[0])
        raise BadTimestamps(
            f"irregular timestamps: {timestamps[position]} (position {position}) is not on the {freq!r} grid"
            + (f" from {timestamps[0]}" if position else "")
            + _weekday_hint(timestamps, freq),
            series_id=series_id,
        )


def _weekday_hint(timestamps: pd.DatetimeIndex, freq: str) -> str:
    """Weekly data anchored on another weekday than `freq`'s: the exact fix."""
    if not str(freq).upper().startswith("W"):
        return ""
    days = sorted(set(timestamps.day_name().str[:3].str.upper()))
    if len(days) != 1:
        return ""
    return f" (its timestamps are all on W-{days[0]}: pass --freq W-{days[0]}, or --freq 7D to read every weekly series on its own weekday)"
