"""Parsing posted or loaded values and timestamps, with errors that name the first bad entry."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime

from forecast.errors import BadTimestamps, NonFiniteValues, NonNumericValues, excerpt

_SPELLED_INFINITY = ("inf", "-inf", "infinity", "-infinity")


def parse_values(series_id: str, raw: object, timestamps: pd.DatetimeIndex | None = None) -> np.ndarray:
    """Values as float64, NaN where one is missing (an empty cell, NaN or null: a gap), or an
    error naming the first entry that is not a number or is infinite."""
    as_series = pd.Series(raw, dtype=object) if not isinstance(raw, pd.Series) else raw.reset_index(drop=True)
    numbers = pd.to_numeric(as_series, errors="coerce")
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    where = _position_label(timestamps)
    if numbers.isna().any():  # only then is the text worth reading (it is slow on a long column)
        text = as_series.astype(str).str.strip().str.lower()
        not_numbers = numbers.isna() & as_series.notna() & ~text.isin(["nan", "", "none", "null", *_SPELLED_INFINITY])
        if not_numbers.any():
            position = int(np.flatnonzero(not_numbers.to_numpy())[0])
            raise NonNumericValues(
                f"value {excerpt(as_series.iloc[position])} {where(position)} is not a number", series_id=series_id
            )
        values[text.isin(_SPELLED_INFINITY).to_numpy()] = np.inf
    bad = np.isinf(values)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise NonFiniteValues(
            f"{int(bad.sum())} infinite value(s), the first {where(position)}; a missing value is empty, NaN or null",
            series_id=series_id,
        )
    return values


def _position_label(timestamps: pd.DatetimeIndex | None):  # type: ignore[no-untyped-def]
    def label(position: int) -> str:
        if timestamps is not None and position < len(timestamps):
            return f"at {timestamps[position]} (position {position})"
        return f"at position {position}"

    return label


def parse_timestamps(series_id: str, raw: object) -> pd.DatetimeIndex:
    """Timestamps as a tz-naive DatetimeIndex (tz-aware ones are converted to UTC)."""
    column = pd.Series(raw) if not isinstance(raw, pd.Series) else raw
    try:
        parsed = pd.to_datetime(column, errors="coerce", utc=True)
        if parsed.isna().any() and column.notna().all():
            # The inferred format may not fit every row (e.g. mixed zone suffixes): parse each.
            parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadTimestamps(f"timestamps cannot be parsed: {exc}", series_id=series_id) from exc
    if parsed.isna().any():
        position = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        original = pd.Series(raw).iloc[position] if not isinstance(raw, pd.Series) else raw.iloc[position]
        raise BadTimestamps(f"timestamp {original!r} at position {position} is not a date", series_id=series_id)
    return pd.DatetimeIndex(parsed.dt.tz_localize(None))


# The instants a datetime64[ns] can hold (pandas' Timestamp.min/max, about 1677-09-21 to
# 2262-04-11). numpy wraps silently outside them (year 3000 parses as 1830), so every posted
# instant is checked against them, and so is the last step of every forecast.
FIRST_NS = int(pd.Timestamp.min.value)
LAST_NS = int(pd.Timestamp.max.value)
# Years whose every instant fits in nanoseconds: strings in them take numpy's fast parse.
_SAFE_YEARS = range(pd.Timestamp.min.year + 1, pd.Timestamp.max.year)


def instant_range_text() -> str:
    return f"{pd.Timestamp.min.ceil('s')} to {pd.Timestamp.max.floor('s')}"


def parse_iso_timestamps(series_id: str, raw: list[str]) -> pd.DatetimeIndex:
    """Posted ISO 8601 timestamps as a tz-naive DatetimeIndex (zone offsets converted to UTC),
    or an error naming the first one that is not ISO 8601 or lies outside the representable
    range. Only ISO 8601 is taken from clients: guessing other formats (dateutil) costs time
    that grows faster than the string, which a request must not be able to buy."""
    parsed = _numpy_datetimes(raw)
    if parsed is not None:
        return pd.DatetimeIndex(parsed)
    for position, text in enumerate(raw):  # the slow path names the first bad entry
        parse_iso_instant(series_id, text, position)
    return pd.DatetimeIndex(pd.to_datetime(raw, format="ISO8601", utc=True).tz_localize(None))


def parse_iso_instant(series_id: str, raw: str, position: int | None = None) -> pd.Timestamp:
    """One posted ISO 8601 instant (a series' start), range-checked like parse_iso_timestamps."""
    try:
        return _iso_instant(raw)
    except _NotFastIso:
        pass
    where = f" at position {position}" if position is not None else ""
    try:
        stamp = pd.Timestamp(pd.to_datetime(raw, format="ISO8601", utc=True))
    except (OutOfBoundsDatetime, OverflowError) as exc:
        raise BadTimestamps(
            f"timestamp {excerpt(raw)}{where} is outside the range the service can represent ({instant_range_text()})",
            series_id=series_id,
        ) from exc
    except (ValueError, TypeError) as exc:
        raise BadTimestamps(
            f"timestamp {excerpt(raw)}{where} is not an ISO 8601 date (e.g. 2024-01-31T13:00:00)",
            series_id=series_id,
        ) from exc
    return stamp.tz_localize(None)


class _NotFastIso(Exception):
    pass


# Cached: the series of a request, and of successive requests, mostly share their start. Only
# successes are cached (lru_cache does not keep raised exceptions), so junk never takes a slot.
@lru_cache(maxsize=1024)
def _iso_instant(raw: str) -> pd.Timestamp:
    parsed = _numpy_datetimes([raw])
    if parsed is None:
        raise _NotFastIso
    return pd.Timestamp(parsed[0])


def _numpy_datetimes(raw: list[str]) -> np.ndarray | None:
    """numpy's ISO 8601 parse, or None where pandas must decide: zone offsets, other formats,
    and years outside _SAFE_YEARS, where numpy's nanoseconds would wrap. A plain ISO string
    starts with its four-digit year; the first and last decide, because a wrapped instant
    between them breaks the regular spacing every window is checked for."""
    if not raw or not all(_plain_year(text) in _SAFE_YEARS for text in (raw[0], raw[-1])):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns on zone offsets: let pandas convert those
        try:
            return np.array(raw, dtype="datetime64[ns]")
        except (ValueError, TypeError, UserWarning, DeprecationWarning, OverflowError):
            return None


def _plain_year(text: str) -> int:
    """The year of a string that starts 'YYYY-', else -1."""
    if len(text) >= 5 and text[4] == "-" and text[:4].isdigit():
        return int(text[:4])
    return -1
