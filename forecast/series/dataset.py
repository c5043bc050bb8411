"""Loading and validating time series: CSV or Parquet, long or wide, checked up front.

Every check fails with one line that names the series and the problem, so that a bad file is
refused before any training starts and a bad request before any model runs.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime

from forecast.errors import (
    BadTimestamps,
    FrequencyError,
    InvalidInput,
    MissingColumns,
    MissingCovariates,
    SeriesTooShort,
    TooLittleSignal,
    excerpt,
)
from forecast.series.covariates import ROW_COLUMN, CovariateColumns, read_static_table, series_covariates
from forecast.series.frequency import normalize_freq
from forecast.series.parsing import parse_timestamps, parse_values
from forecast.series.spacing import check_signal, grid_positions, infer_freq

logger = logging.getLogger(__name__)

BUNDLED_DATA = Path(__file__).parent / "bundled"
BUNDLED_SETS = {"etth1": BUNDLED_DATA / "ett" / "ETTh1.csv"}


@dataclass(slots=True)
class Columns:
    """Column names of the long format; a wide table has a timestamp column and one per series."""

    series_id: str = "series_id"
    timestamp: str = "timestamp"
    value: str = "value"
    # Numeric timestamps are read as Unix time in this unit ("s", "ms", "us", "ns"); without one
    # they are refused: pandas would read 1704067200 as nanoseconds after 1970 and a model would
    # train on a nanosecond axis.
    timestamp_unit: str | None = None


@dataclass(slots=True)
class Series:
    series_id: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray  # (T,) float64, NaN where a value is missing (a gap, or padding)
    past: np.ndarray | None = None  # (T, P) float64 past covariates (None: none)
    future: np.ndarray | None = None  # (T, K) float64 future-known covariates (None: none)
    static: dict[str, str | float] = field(default_factory=dict)  # static covariates by name
    padding: int = 0  # leading points that are padding (a series shorter than training needs), not data

    def __len__(self) -> int:
        return len(self.values)

    @property
    def past_values(self) -> np.ndarray:
        return np.zeros((len(self), 0)) if self.past is None else self.past

    @property
    def future_values(self) -> np.ndarray:
        return np.zeros((len(self), 0)) if self.future is None else self.future


@dataclass(slots=True)
class Dataset:
    series: list[Series]
    freq: str
    source: str
    covariates: CovariateColumns = field(default_factory=CovariateColumns)
    unused_columns: list[str] = field(default_factory=list)  # columns of the file nothing read
    # series of the file left out, each with why (too little signal; with `leave_out_bad`, any
    # problem of the series alone): the rest still train or forecast
    left_out: list[InvalidInput] = field(default_factory=list)

    @property
    def n_points(self) -> int:
        """Points of the data (padding is not data)."""
        return sum(len(s) - s.padding for s in self.series)

    def fingerprint(self) -> str:
        """sha256 over ids, timestamps, values and covariates: the same data always gives the same
        digest (and a file without covariates the digest it had before they existed)."""
        digest = hashlib.sha256(self.freq.encode())
        for series in self.series:
            data = slice(series.padding, None)  # padding is not data
            digest.update(series.series_id.encode() + b"\0")
            digest.update(series.timestamps.asi8[data].tobytes())
            digest.update(np.ascontiguousarray(series.values[data], dtype=np.float64).tobytes())
            for block in (series.past, series.future):
                if block is not None and block.size:
                    digest.update(np.ascontiguousarray(block[data], dtype=np.float64).tobytes())
            for name, value in sorted(series.static.items()):
                digest.update(f"{name}={value}\0".encode())
        return digest.hexdigest()


# A CSV's first line names its columns: one longer than this, or naming more columns than this,
# is not a table the job can use, and parsing it would take minutes and gigabytes (a 100 MB
# single-line file is 26 million columns) before anything could be said. Checked before parsing.
MAX_HEADER_BYTES = 1024 * 1024
MAX_COLUMNS = 100_000


def _check_csv_header(source: Path, shown: str) -> None:
    opener = gzip.open if source.suffix.lower() == ".gz" else open
    with opener(source, "rb") as handle:
        head = handle.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES and not head.endswith(b"\n"):
        raise InvalidInput(
            f"cannot read {shown!r}: its first line is longer than {MAX_HEADER_BYTES // 1024} KiB, which no header of "
            "a table of series needs (is it one line of data, or not a CSV?)"
        )
    columns = next(csv.reader([head.decode("utf-8", "replace")]), [])
    if len(columns) > MAX_COLUMNS:
        raise InvalidInput(
            f"cannot read {shown!r}: its header names {len(columns):,} columns, more than the {MAX_COLUMNS:,} "
            "a table of series may have (a wide table holds one column per series)"
        )


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
            _check_csv_header(source, str(path))
            return pd.read_csv(source)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot read {str(path)!r}: {first_line}") from exc
    raise InvalidInput(f"{str(path)!r}: unknown file type {suffix!r}; use .csv or .parquet")


def to_long(
    frame: pd.DataFrame, columns: Columns, target: str | None = None, covariates: CovariateColumns | None = None
) -> LongTable:
    """Bring a long or wide table to long format with columns series_id, timestamp, value, then
    the covariate columns (and each row's place in the file when there are covariates).

    A table with the series-id column is long (`target`, if given, names its value column);
    otherwise it is wide: a timestamp column and one column per series (`target` picks one).
    Wide tables may hold series of different lengths: leading and trailing empty cells are
    dropped, empty cells inside a series are refused like any other missing value. In a wide
    table of one series (`target`), the covariates are the columns beside it.
    """
    covariates = covariates or CovariateColumns()
    present = [str(c) for c in frame.columns]
    wanted = covariates.in_data_file
    if covariates.in_data_file:
        frame = frame.assign(**{ROW_COLUMN: np.arange(1, len(frame) + 1)})  # data rows, from 1
    extra = [ROW_COLUMN] if wanted else []
    if columns.series_id in present:
        value_column = target or columns.value
        covariates.check_names([columns.series_id, columns.timestamp, value_column])
        _require(present, [columns.timestamp, value_column], "long-format data")
        _require(present, wanted, "the data", covariates=True)
        long = frame[[columns.series_id, columns.timestamp, value_column, *wanted, *extra]]
        long.columns = pd.Index(["series_id", "timestamp", "value", *wanted, *extra])
        used = {columns.series_id, columns.timestamp, value_column, *wanted}
        return LongTable(long.assign(series_id=long["series_id"].astype(str)), [c for c in present if c not in used])
    time_column = next((c for c in (columns.timestamp, "date", "timestamp", "ds") if c in present), None)
    if time_column is None:
        raise MissingColumns(
            f"no series-id column {columns.series_id!r} (long format) and no timestamp column "
            f"{columns.timestamp!r} (wide format); found columns {_shown(present)}"
        )
    value_columns = [c for c in present if c != time_column]
    if target is not None:
        if target not in present:
            raise MissingColumns(f"target column {excerpt(target)} not found; found columns {_shown(present)}")
        value_columns = [target]
    elif not covariates.empty:
        raise InvalidInput(
            "covariates in a wide table need --target: the table is one series (the target column) with "
            "its covariates beside it; for several series use the long format (series_id, timestamp, value, ...)"
        )
    if not value_columns:
        raise MissingColumns(f"wide-format data has a timestamp column {time_column!r} but no series columns")
    covariates.check_names([time_column, *value_columns])
    _require(present, wanted, "the data", covariates=True)
    long = frame.melt(
        id_vars=[time_column, *wanted, *extra], value_vars=value_columns, var_name="series_id", value_name="value"
    )
    long = long.rename(columns={time_column: "timestamp"})
    is_present = long["value"].notna()
    rank = is_present.groupby(long["series_id"]).cumsum()
    remaining = is_present[::-1].groupby(long["series_id"][::-1]).cumsum()[::-1]
    used = {time_column, *value_columns, *wanted}
    trimmed = long[(rank > 0) & (remaining > 0)][["series_id", "timestamp", "value", *wanted, *extra]]
    return LongTable(trimmed, [c for c in present if c not in used])


@dataclass(slots=True)
class LongTable:
    frame: pd.DataFrame  # series_id, timestamp, value, covariate columns
    unused_columns: list[str]


def _require(present: list[str], needed: list[str], where: str, *, covariates: bool = False) -> None:
    missing = [c for c in needed if c not in present]
    if missing and covariates:
        raise MissingCovariates(f"missing covariate columns {missing} in {where}; found columns {_shown(present)}")
    if missing:
        raise MissingColumns(f"missing columns {missing} in {where}; found columns {_shown(present)}")


def _shown(names: list[str], most: int = 20) -> str:
    """Column names for a message: a few, each as an excerpt, however wide or long the file's."""
    listed = ", ".join(excerpt(name) for name in names[:most])
    return f"[{listed}{f', ... ({len(names)} in all)' if len(names) > most else ''}]"


@dataclass(slots=True)
class _Parsed:
    """One series' rows, parsed, before its frequency is settled."""

    series_id: str
    rows: pd.DataFrame
    stamps: pd.DatetimeIndex
    values: np.ndarray  # (T,) float64, NaN where missing


def _parse(series_id: str, timestamps: object, values: object) -> _Parsed:
    stamps = parse_timestamps(series_id, timestamps)
    numbers = parse_values(series_id, values, stamps)
    if len(stamps) != len(numbers):
        raise InvalidInput(f"{len(stamps)} timestamps but {len(numbers)} values", series_id=series_id)
    if len(numbers) == 0:
        raise SeriesTooShort("has no observations", series_id=series_id)
    return _Parsed(series_id, pd.DataFrame(), stamps, numbers)


def _on_grid(parsed: _Parsed, freq: str) -> tuple[Series, np.ndarray | None]:
    """The series on its frequency's grid, missing timestamps as gaps (NaN); and where each row
    landed on the grid (None: the rows are the grid)."""
    positions = grid_positions(parsed.series_id, parsed.stamps, freq)
    stamps, values = parsed.stamps, parsed.values
    if positions is not None:
        stamps = _grid(stamps[0], int(positions[-1]) + 1, freq)
        values = _placed(values, positions, len(stamps))
    check_signal(parsed.series_id, values, freq)
    return Series(series_id=parsed.series_id, timestamps=stamps, values=values), positions


def _grid(first: pd.Timestamp, periods: int, freq: str) -> pd.DatetimeIndex:
    return pd.date_range(start=first, periods=periods, freq=freq)


def _placed(values: np.ndarray, positions: np.ndarray, length: int) -> np.ndarray:
    """(length, ...) NaN, with the rows of `values` at `positions`."""
    placed = np.full((length, *values.shape[1:]), np.nan)
    placed[positions] = values
    return placed


def validate_series(series_id: str, timestamps: object, values: object, freq: str | None) -> tuple[Series, str]:
    """One series checked and placed on its (given or inferred) frequency's grid; returns it
    with that frequency."""
    parsed = _parse(series_id, timestamps, values)
    series_freq = normalize_freq(freq) if freq else infer_freq(series_id, parsed.stamps)
    return _on_grid(parsed, series_freq)[0], series_freq


def _file_freq(parsed: list[_Parsed], freq: str | None) -> str:
    """The one frequency of a file: the given one, or the one its series show. Series too short to
    show one take the others'; weekly series anchored on different weekdays share a 7-day step,
    each on its own weekday."""
    if freq:
        return normalize_freq(freq)
    frequencies: dict[str, str] = {}
    unreadable: list[InvalidInput] = []
    for one in parsed:
        if len(one.stamps) < 3:
            continue
        try:
            frequencies[one.series_id] = infer_freq(one.series_id, one.stamps)
        except (FrequencyError, BadTimestamps) as error:
            # A series too sparse to show its frequency is placed on the others' (and left
            # out there when it has too little signal, or refused when it is off that grid).
            unreadable.append(error)
    if not frequencies and unreadable:
        raise unreadable[0]
    if not frequencies:
        shortest = min(parsed, key=lambda p: len(p.stamps))
        infer_freq(shortest.series_id, shortest.stamps)  # raises: too few timestamps to tell
    distinct = sorted(set(frequencies.values()))
    if len(distinct) > 1 and all(f.upper().startswith("W") for f in distinct):
        return "7D"
    if len(distinct) > 1:
        first = {f: next(s for s, v in frequencies.items() if v == f) for f in distinct}
        raise FrequencyError(
            "series have different frequencies: "
            + ", ".join(f"{f!r} (e.g. series {s!r})" for f, s in first.items())
            + "; pass --freq or train them separately"
        )
    return distinct[0]


def validate_frame(
    long: pd.DataFrame,
    freq: str | None,
    source: str,
    covariates: CovariateColumns | None = None,
    static_table: pd.DataFrame | None = None,
    *,
    leave_out_bad: bool = False,
) -> Dataset:
    """Split a long frame into validated series sharing one frequency, with their covariates.
    Missing values and timestamps are gaps (NaN); a series with too little signal is left out
    (`Dataset.left_out`), and the file refused only when no series is left. With `leave_out_bad`
    (batch scoring) any problem of one series alone (its values, timestamps or covariates)
    leaves it out the same way; without it, such a problem refuses the file."""
    if long.empty:
        raise InvalidInput(f"{source}: the data has no rows")
    covariates = covariates or CovariateColumns()
    left_out: list[InvalidInput] = []
    tolerated = InvalidInput if leave_out_bad else TooLittleSignal
    parsed: list[_Parsed] = []
    for series_id, rows in long.groupby("series_id", sort=False):
        try:
            one = _parse(str(series_id), rows["timestamp"], rows["value"])
        except InvalidInput as error:
            if not leave_out_bad:
                raise
            left_out.append(error)
            continue
        one.rows = rows
        parsed.append(one)
    if not parsed:
        raise left_out[0]
    file_freq = _file_freq(parsed, freq)
    series: list[Series] = []
    for one in parsed:
        try:
            checked, positions = _on_grid(one, file_freq)
            if not covariates.empty:  # rows are in time order: grid_positions refuses any other
                found = series_covariates(one.series_id, one.rows, covariates, static_table)
                checked.past, checked.future, checked.static = found.past, found.future, found.static
                if positions is not None:  # a missing timestamp misses its covariates too
                    checked.past = _placed(found.past, positions, len(checked))
                    checked.future = _placed(found.future, positions, len(checked))
        except tolerated as error:
            left_out.append(error)  # nothing to forecast from; the other series still train
            continue
        series.append(checked)
    if not series:
        raise left_out[0]
    return Dataset(series=series, freq=file_freq, source=source, covariates=covariates, left_out=left_out)


def _instants(long: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """The timestamp column as instants: numbers only with a unit, never guessed as nanoseconds."""
    stamps = long["timestamp"]
    numeric = pd.api.types.is_numeric_dtype(stamps) and not pd.api.types.is_bool_dtype(stamps)
    if columns.timestamp_unit is None:
        if numeric:
            example = excerpt(stamps.dropna().iloc[0]) if stamps.notna().any() else "numbers"
            raise BadTimestamps(
                f"timestamp column {columns.timestamp!r} holds numbers (e.g. {example}), not dates: pass "
                "--timestamp-unit s (or ms, us, ns) to read them as Unix time, or write ISO 8601 dates"
            )
        return long
    if not numeric:
        raise BadTimestamps(
            f"--timestamp-unit {columns.timestamp_unit} reads numeric timestamps, but column "
            f"{columns.timestamp!r} holds text: leave the unit out for dates"
        )
    try:
        instants = pd.to_datetime(stamps, unit=columns.timestamp_unit)  # type: ignore[call-overload]  # stubs lack Series+unit
    except (ValueError, OverflowError, OutOfBoundsDatetime) as exc:
        raise BadTimestamps(
            f"timestamp column {columns.timestamp!r} in {columns.timestamp_unit} since 1970 runs past the instants "
            f"the service can represent ({exc.__class__.__name__})"
        ) from None
    return long.assign(timestamp=instants)


def load_dataset(
    path: str | Path,
    *,
    columns: Columns | None = None,
    target: str | None = None,
    freq: str | None = None,
    covariates: CovariateColumns | None = None,
    leave_out_bad: bool = False,
) -> Dataset:
    columns = columns or Columns()
    covariates = covariates or CovariateColumns()
    frame = read_table(path)
    long = to_long(frame, columns, target, covariates)
    long.frame = _instants(long.frame, columns)
    static_table = None
    if covariates.static_data:
        static_table = read_static_table(covariates.static_data, columns.series_id, covariates.static_names)
    dataset = validate_frame(long.frame, freq, str(path), covariates, static_table, leave_out_bad=leave_out_bad)
    dataset.unused_columns = long.unused_columns
    return dataset
