"""Calendar features derived from timestamps, chosen by the data's frequency.

Each feature is a sine/cosine pair so that hour 23 sits next to hour 0. The names go into the
manifest; training and serving compute them with this one function from the timestamps alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from forecast.series.frequency import cadence


# Positions within each cycle from datetime64[ns] arrays, in numpy: this runs for every served
# series, where pandas' per-call overhead would cost more than the network. Unit conversions
# floor, so dates before 1970 work too; 1970-01-01 was a Thursday (Monday = 0).
def _minute_of_hour(t: np.ndarray) -> np.ndarray:
    return t.astype("datetime64[m]").astype(np.int64) % 60


def _hour_of_day(t: np.ndarray) -> np.ndarray:
    return t.astype("datetime64[h]").astype(np.int64) % 24


def _day_of_week(t: np.ndarray) -> np.ndarray:
    return (t.astype("datetime64[D]").astype(np.int64) + 3) % 7


def _day_of_year(t: np.ndarray) -> np.ndarray:
    return (t.astype("datetime64[D]") - t.astype("datetime64[Y]")).astype(np.int64)


def _week_of_year(t: np.ndarray) -> np.ndarray:
    return pd.DatetimeIndex(t).isocalendar().week.to_numpy().astype(np.int64) - 1  # ISO weeks: leave to pandas


def _month_of_year(t: np.ndarray) -> np.ndarray:
    return t.astype("datetime64[M]").astype(np.int64) % 12


# feature name -> (position within its cycle, cycle length)
_CYCLES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "minute_of_hour": (_minute_of_hour, 60.0),
    "hour_of_day": (_hour_of_day, 24.0),
    "day_of_week": (_day_of_week, 7.0),
    "day_of_year": (_day_of_year, 366.0),
    "week_of_year": (_week_of_year, 53.0),
    "month_of_year": (_month_of_year, 12.0),
}
FEATURE_NAMES = tuple(_CYCLES)


def default_features(freq: str) -> list[str]:
    """The calendar cycles shorter than a year that a series of this frequency can show."""
    return list(cadence(freq).calendar_features)


def feature_width(names: list[str] | tuple[str, ...]) -> int:
    """Columns of `calendar_features(..., names)`: a sine and a cosine per cycle."""
    return 2 * len(names)


def calendar_features(timestamps: pd.DatetimeIndex | np.ndarray, names: list[str]) -> np.ndarray:
    """(T, 2 * len(names)) float32: sin and cos of each named cycle, from tz-naive timestamps."""
    stamps = np.asarray(timestamps, dtype="datetime64[ns]")
    columns: list[np.ndarray] = []
    for name in names:
        position_of, cycle = _CYCLES[name]
        angle = 2.0 * np.pi * position_of(stamps).astype(np.float64) / cycle
        columns.extend([np.sin(angle), np.cos(angle)])
    if not columns:
        return np.zeros((len(timestamps), feature_width(names)), dtype=np.float32)
    return np.stack(columns, axis=1).astype(np.float32)


def future_timestamps(last: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    return pd.date_range(start=last, periods=horizon + 1, freq=freq)[1:]
