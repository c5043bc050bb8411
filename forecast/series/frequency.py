"""Frequencies: their canonical spelling, their step, and the one cadence taxonomy.

`cadence(freq)` classifies a pandas frequency once; the season of the seasonal-naive baseline,
MASE's period and the default calendar features all read it, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from functools import lru_cache

import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecast.errors import FrequencyError


@lru_cache(maxsize=256)
def normalize_freq(freq: str) -> str:
    """Canonical pandas spelling of a frequency ('H' and 'h' are the same), or FrequencyError."""
    try:
        return str(to_offset(freq).freqstr)
    except (ValueError, TypeError) as exc:
        raise FrequencyError(f"{freq!r} is not a pandas frequency (e.g. 'h', 'D', 'W-SUN', 'MS')") from exc


@lru_cache(maxsize=256)
def same_freq(left: str, right: str) -> bool:
    return bool(to_offset(left) == to_offset(right))


@lru_cache(maxsize=256)  # on the serving path for every posted series
def fixed_step_ns(freq: str) -> int | None:
    """The step of a fixed frequency ('h', '15min', 'D') in nanoseconds; None for calendar
    frequencies whose step varies or is anchored ('W-SUN', 'MS', 'B')."""
    try:
        return int(to_offset(freq).nanos)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Cadence:
    """What a frequency implies for forecasting."""

    season_length: int  # observations per natural cycle: one day below daily, a week for days, a year above
    calendar_features: tuple[str, ...]  # the cycles shorter than a year that such a series can show
    cycles: tuple[int, ...] = ()  # every natural cycle in observations, shortest first (hourly: day, week)

    @property
    def mase_period(self) -> int:
        """The seasonal difference in MASE's denominator, as the M4 competition defines it:
        24 for hourly, 12 monthly, 4 quarterly, and 1 for daily, weekly and yearly data."""
        return self.season_length if self.season_length in {4, 12, 24} else 1


_DAY = pd.Timedelta(days=1)
_WEEK = pd.Timedelta(days=7)


def _fixed_cadence(step: pd.Timedelta) -> Cadence:
    per_day, per_week = int(_DAY / step), int(_WEEK / step)
    if step < _DAY:
        # whole days and weeks of steps only: a 7-hour step has no daily cycle on the grid
        cycles = tuple(c for c, span in ((per_day, _DAY), (per_week, _WEEK)) if c > 1 and step * c == span)
        features = (
            ("minute_of_hour", "hour_of_day", "day_of_week")
            if step < pd.Timedelta(hours=1)
            else ("hour_of_day", "day_of_week")
        )
        return Cadence(max(1, per_day), features, cycles)  # 24 for hourly data
    if step < _WEEK:
        return Cadence(7 if step == _DAY else 1, ("day_of_week", "day_of_year"), (7, 365) if step == _DAY else ())
    return Cadence(52 if step == _WEEK else 1, ("week_of_year",), (52,) if step == _WEEK else ())


def _calendar_cadence(name: str) -> Cadence:
    """Calendar offsets have no fixed step; their name says what they are."""
    if name in {"B", "C"}:  # business days: a 5-day week
        return Cadence(5, ("day_of_week", "day_of_year"), (5,))
    if name.startswith("W"):
        return Cadence(52, ("week_of_year",), (52,))
    if name.startswith(("Q", "BQ")):
        return Cadence(4, (), (4,))
    if name.startswith(("M", "BM", "SM", "CBM")):
        return Cadence(12, ("month_of_year",), (12,))
    return Cadence(1, ())


@lru_cache(maxsize=256)
def cadence(freq: str) -> Cadence:
    step_ns = fixed_step_ns(freq)
    if step_ns is not None:
        return _fixed_cadence(pd.Timedelta(step_ns, unit="ns"))
    offset = to_offset(freq)
    if isinstance(offset, pd.offsets.BusinessHour | pd.offsets.CustomBusinessHour):
        return _business_hours_cadence(offset)
    return _calendar_cadence(offset.name.upper())


def _business_hours_cadence(offset: pd.offsets.BusinessHour | pd.offsets.CustomBusinessHour) -> Cadence:
    """Business hours ('bh': 9:00 to 17:00 on weekdays): a day of opening hours, and a week of them."""
    # pandas-stubs do not declare the opening times; they are tuples of datetime.time.
    opening: tuple[tuple[time, ...], tuple[time, ...]] = (offset.start, offset.end)  # type: ignore[union-attr]
    minutes = 0
    for start, end in zip(*opening, strict=True):
        open_minutes = (end.hour * 60 + end.minute - start.hour * 60 - start.minute) % (24 * 60)
        minutes += open_minutes or 24 * 60
    per_day = max(1, minutes // (60 * int(offset.n)))
    return Cadence(per_day, ("hour_of_day", "day_of_week"), (per_day, 5 * per_day))
