"""Loading and validating time series: CSV or Parquet, long or wide, checked up front.

Every check fails with one line that names the series and the problem, so that a bad file is
refused before any training starts and a bad request before any model runs.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecast.errors import (
    BadTimestamps,
    FrequencyError,
    InvalidInput,
    MissingColumns,
    NonFiniteValues,
    NonNumericValues,
    SeriesTooShort,
)

logger = logging.getLogger(__name__)

BUNDLED_DATA = Path(__file__).parent / "data"
BUNDLED_SETS = {"etth1": BUNDLED_DATA / "ett" / "ETTh1.csv"}


@dataclass(slots=True)
class Columns:
    """Column names of the long format; a wide table has a timestamp column and one per series."""

    series_id: str = "series_id"
    timestamp: str = "timestamp"
    value: str = "value"


@dataclass(slots=True)
class Series:
    series_id: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray  # (T,) float64, finite

    def __len__(self) -> int:
        return len(self.values)


@dataclass(slots=True)
class Dataset:
    series: list[Series]
    freq: str
    source: str

    @property
    def n_points(self) -> int:
        return sum(len(s) for s in self.series)

    def fingerprint(self) -> str:
        """sha256 over ids, timestamps and values: the same data always gives the same digest."""
        digest = hashlib.sha256(self.freq.encode())
        for series in self.series:
            digest.update(series.series_id.encode() + b"\0")
            digest.update(series.timestamps.asi8.tobytes())
            digest.update(np.ascontiguousarray(series.values, dtype=np.float64).tobytes())
        return digest.hexdigest()


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


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file; `etth1` names the bundled ETTh1 data."""
    source = BUNDLED_SETS.get(str(path).lower(), Path(path))
    if not source.exists():
        raise InvalidInput(f"data file {str(path)!r} does not exist (or use a bundled set: {', '.join(BUNDLED_SETS)})")
    suffix = source.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(source)
        if suffix in {".csv", ".txt"} or suffix.endswith(".gz"):
            return pd.read_csv(source)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot read {str(path)!r}: {first_line}") from exc
    raise InvalidInput(f"{str(path)!r}: unknown file type {suffix!r}; use .csv or .parquet")


def to_long(frame: pd.DataFrame, columns: Columns, target: str | None = None) -> pd.DataFrame:
    """Bring a long or wide table to long format with columns series_id, timestamp, value.

    A table with the series-id column is long (`target`, if given, names its value column);
    otherwise it is wide: a timestamp column and one column per series (`target` picks one).
    Wide tables may hold series of different lengths: leading and trailing empty cells are
    dropped, empty cells inside a series are refused like any other missing value.
    """
    present = [str(c) for c in frame.columns]
    if columns.series_id in present:
        value_column = target or columns.value
        missing = [c for c in (columns.timestamp, value_column) if c not in present]
        if missing:
            raise MissingColumns(f"missing columns {missing} in long-format data; found columns {present}")
        long = frame[[columns.series_id, columns.timestamp, value_column]]
        long.columns = pd.Index(["series_id", "timestamp", "value"])
        return long.assign(series_id=long["series_id"].astype(str))
    time_column = next((c for c in (columns.timestamp, "date", "timestamp", "ds") if c in present), None)
    if time_column is None:
        raise MissingColumns(
            f"no series-id column {columns.series_id!r} (long format) and no timestamp column "
            f"{columns.timestamp!r} (wide format); found columns {present}"
        )
    value_columns = [c for c in present if c != time_column]
    if target is not None:
        if target not in present:
            raise MissingColumns(f"target column {target!r} not found; found columns {present}")
        value_columns = [target]
    if not value_columns:
        raise MissingColumns(f"wide-format data has a timestamp column {time_column!r} but no series columns")
    long = frame.melt(id_vars=[time_column], value_vars=value_columns, var_name="series_id", value_name="value")
    long = long.rename(columns={time_column: "timestamp"})
    is_present = long["value"].notna()
    rank = is_present.groupby(long["series_id"]).cumsum()
    remaining = is_present[::-1].groupby(long["series_id"][::-1]).cumsum()[::-1]
    return long[(rank > 0) & (remaining > 0)][["series_id", "timestamp", "value"]]


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


def validate_series(series_id: str, timestamps: object, values: object, freq: str | None) -> tuple[Series, str]:
    """One series checked and converted; returns it with its (given or inferred) frequency."""
    stamps = parse_timestamps(series_id, timestamps)
    numbers = parse_values(series_id, values, stamps)
    if len(stamps) != len(numbers):
        raise InvalidInput(f"{len(stamps)} timestamps but {len(numbers)} values", series_id=series_id)
    if len(numbers) == 0:
        raise SeriesTooShort("has no observations", series_id=series_id)
    if freq:
        series_freq = normalize_freq(freq)
    else:
        check_order(series_id, stamps)  # inference needs sorted, unique timestamps to be meaningful
        series_freq = infer_freq(series_id, stamps)
    check_spacing(series_id, stamps, series_freq)
    return Series(series_id=series_id, timestamps=stamps, values=numbers), series_freq


def validate_frame(long: pd.DataFrame, freq: str | None, source: str) -> Dataset:
    """Split a long frame into validated series sharing one frequency."""
    if long.empty:
        raise InvalidInput(f"{source}: the data has no rows")
    series: list[Series] = []
    frequencies: dict[str, str] = {}
    for series_id, rows in long.groupby("series_id", sort=False):
        checked, series_freq = validate_series(str(series_id), rows["timestamp"], rows["value"], freq)
        series.append(checked)
        frequencies[str(series_id)] = series_freq
    distinct = sorted(set(frequencies.values()))
    if len(distinct) > 1:
        first = {f: next(s for s, v in frequencies.items() if v == f) for f in distinct}
        raise FrequencyError(
            "series have different frequencies: "
            + ", ".join(f"{f!r} (e.g. series {s!r})" for f, s in first.items())
            + "; pass --freq or train them separately"
        )
    return Dataset(series=series, freq=distinct[0], source=source)


def load_dataset(
    path: str | Path, *, columns: Columns | None = None, target: str | None = None, freq: str | None = None
) -> Dataset:
    frame = read_table(path)
    long = to_long(frame, columns or Columns(), target)
    return validate_frame(long, freq, str(path))


def require_length(dataset: Dataset, minimum: int, why: str) -> None:
    for series in dataset.series:
        if len(series) < minimum:
            raise SeriesTooShort(
                f"has {len(series)} points but needs at least {minimum} ({why})", series_id=series.series_id
            )
