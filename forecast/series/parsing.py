"""Parsing posted or loaded values and timestamps, with errors that name the first bad entry."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd

from forecast.errors import BadTimestamps, NonFiniteValues, NonNumericValues

_SPELLED_INFINITY = ("inf", "-inf", "infinity", "-infinity")


def parse_values(series_id: str, raw: object, timestamps: pd.DatetimeIndex | None = None) -> np.ndarray:
    """Values as finite float64, or an error naming the first bad entry."""
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
                f"value {as_series.iloc[position]!r} {where(position)} is not a number", series_id=series_id
            )
        values[text.isin(_SPELLED_INFINITY).to_numpy()] = np.inf
    bad = ~np.isfinite(values)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise NonFiniteValues(
            f"{int(bad.sum())} missing, NaN or infinite value(s), the first {where(position)}; "
            "fill or drop them before sending (no fill policy is applied silently)",
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


def parse_timestamps_fast(series_id: str, raw: list[str]) -> pd.DatetimeIndex:
    """ISO 8601 timestamps without a zone parse in numpy (about 100x faster than pandas on a
    request's worth); anything else takes the general path with its error messages."""
    parsed = _numpy_datetimes(raw)
    return pd.DatetimeIndex(parsed) if parsed is not None else parse_timestamps(series_id, raw)


def parse_instant(series_id: str, raw: str) -> pd.Timestamp:
    """One timestamp (a series' start), through the same rules as parse_timestamps_fast."""
    parsed = _iso_instant(raw)
    return parsed if parsed is not None else pd.Timestamp(parse_timestamps(series_id, [raw])[0])


@lru_cache(maxsize=1024)
def _iso_instant(raw: str) -> pd.Timestamp | None:
    """Cached: the series of a request, and of successive requests, mostly share their start."""
    parsed = _numpy_datetimes([raw])
    return pd.Timestamp(parsed[0]) if parsed is not None else None


def _numpy_datetimes(raw: list[str]) -> np.ndarray | None:
    """numpy's ISO 8601 parse, or None where pandas must decide (zone offsets, other formats)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns on zone offsets: let pandas convert those
        try:
            return np.array(raw, dtype="datetime64[ns]")
        except (ValueError, TypeError, UserWarning, DeprecationWarning, OverflowError):
            return None
