"""Checks that a series' timestamps are strictly increasing and regular at a frequency, and the
inference of that frequency when none is given."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.errors import BadTimestamps, FrequencyError
from forecast.series.frequency import fixed_step_ns, normalize_freq, same_freq


def check_order(series_id: str, timestamps: pd.DatetimeIndex) -> None:
    steps = np.diff(timestamps.asi8)
    if (steps <= 0).any():
        position = int(np.flatnonzero(steps <= 0)[0]) + 1
        kind = "duplicate" if steps[position - 1] == 0 else "unsorted"
        raise BadTimestamps(
            f"{kind} timestamp {timestamps[position]} at position {position} "
            f"(after {timestamps[position - 1]}); timestamps must be strictly increasing",
            series_id=series_id,
        )


def infer_freq(series_id: str, timestamps: pd.DatetimeIndex) -> str:
    if len(timestamps) < 3:
        raise FrequencyError(
            f"cannot infer a frequency from {len(timestamps)} timestamp(s); give the frequency explicitly",
            series_id=series_id,
        )
    freq = pd.infer_freq(timestamps)
    if freq is None:
        # Name where the spacing breaks, which is what the user has to fix.
        steps = np.diff(timestamps.asi8)
        usual = np.bincount(np.unique(steps, return_inverse=True)[1]).argmax()
        usual_step = np.unique(steps)[usual]
        position = int(np.flatnonzero(steps != usual_step)[0]) + 1
        raise FrequencyError(
            f"irregular timestamps: cannot infer a frequency; the spacing changes at {timestamps[position]} "
            f"(position {position}, {pd.Timedelta(int(steps[position - 1]))} after the previous one instead of "
            f"{pd.Timedelta(int(usual_step))}); give the frequency explicitly or fix the gaps",
            series_id=series_id,
        )
    return normalize_freq(freq)


def check_regular(series_id: str, timestamps: pd.DatetimeIndex, freq: str) -> None:
    if len(timestamps) >= 3:
        inferred = pd.infer_freq(timestamps)  # vectorised; date_range loops in Python for W, MS...
        if inferred is not None and same_freq(normalize_freq(inferred), freq):
            return
    expected = pd.date_range(start=timestamps[0], periods=len(timestamps), freq=freq)
    mismatch = expected.asi8 != timestamps.asi8
    if mismatch.any():
        position = int(np.flatnonzero(mismatch)[0])
        raise BadTimestamps(
            f"irregular timestamps at frequency {freq!r}: expected {expected[position]} at position {position}, "
            f"got {timestamps[position]} (missing or extra rows?)",
            series_id=series_id,
        )


def check_spacing(series_id: str, timestamps: pd.DatetimeIndex, freq: str) -> None:
    """Strictly increasing at exactly `freq`: one vectorised comparison for fixed frequencies,
    the full checks (which word the error) otherwise or when that comparison fails."""
    step = fixed_step_ns(freq)
    if step is not None and len(timestamps) > 1 and (np.diff(timestamps.asi8) == step).all():
        return
    check_order(series_id, timestamps)
    check_regular(series_id, timestamps, freq)
