"""A data file read into one long table (series_id, timestamp, value, covariate columns):
CSV or Parquet, long or wide, with its header checked before anything is parsed and its
timestamps read as instants. `forecast.series.dataset` validates the table into series.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.errors import OutOfBoundsDatetime

from forecast.errors import BadTimestamps, InvalidInput, MissingColumns, MissingCovariates, excerpt
from forecast.series.covariates import ROW_COLUMN, CovariateColumns

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


# A CSV's first line names its columns: one longer than this, or naming more columns than this,
# is not a table the job can use, and parsing it would take minutes and gigabytes (a 100 MB
# single-line file is 26 million columns) before anything could be said. Checked before parsing.
MAX_HEADER_BYTES = 1024 * 1024
MAX_COLUMNS = 100_000


def _csv_header(source: Path, shown: str) -> list[str]:
    """The CSV's column names, from its first line alone, refused when no table of series
    could have that header."""
    opener = gzip.open if source.suffix.lower() == ".gz" else open
    with opener(source, "rb") as handle:
        head = handle.readline(MAX_HEADER_BYTES + 1)
    if len(head) > MAX_HEADER_BYTES and not head.endswith(b"\n"):
        raise InvalidInput(
            f"cannot read {shown!r}: its first line is longer than {MAX_HEADER_BYTES // 1024} KiB, which no header of "
            "a table of series needs (is it one line of data, or not a CSV?)"
        )
    columns = next(csv.reader([head.decode("utf-8", "replace").lstrip("\ufeff")]), [])
    if len(columns) > MAX_COLUMNS:
        raise InvalidInput(
            f"cannot read {shown!r}: its header names {len(columns):,} columns, more than the {MAX_COLUMNS:,} "
            "a table of series may have (a wide table holds one column per series)"
        )
    return columns


def _source(path: str | Path) -> Path:
    source = BUNDLED_SETS.get(str(path).lower(), Path(path))
    if not source.exists():
        raise InvalidInput(f"data file {str(path)!r} does not exist (or use a bundled set: {', '.join(BUNDLED_SETS)})")
    return source


def _kind(source: Path, path: str | Path) -> str:
    suffix = source.suffix.lower()
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    if suffix in {".csv", ".txt"} or suffix.endswith(".gz"):
        return "csv"
    raise InvalidInput(f"{str(path)!r}: unknown file type {suffix!r}; use .csv or .parquet")


def _unreadable(path: str | Path, exc: Exception) -> InvalidInput:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InvalidInput(f"cannot read {str(path)!r}: {first_line}")


@dataclass(frozen=True, slots=True)
class DataFile:
    """A data file opened for reading: where it is, its format, and its header (checked)."""

    shown: str  # as the user named it, for messages
    source: Path
    kind: str  # "csv" or "parquet"
    header: list[str]


def open_data_file(path: str | Path) -> DataFile:
    """The file's format and column names, read without its rows (a CSV's first line, checked
    before anything is parsed; Parquet's schema); `etth1` names the bundled ETTh1 data."""
    source = _source(path)
    kind = _kind(source, path)
    try:
        if kind == "parquet":
            header = [str(name) for name in pq.read_schema(source).names]
        else:
            header = _csv_header(source, str(path))
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc) from exc
    return DataFile(shown=str(path), source=source, kind=kind, header=header)


def read_table(data: DataFile, only: list[str] | None = None) -> pd.DataFrame:
    """The file's rows (`only`: just these of its columns)."""
    try:
        if data.kind == "parquet":
            return pd.read_parquet(data.source, columns=only)
        return pd.read_csv(data.source, usecols=only)
    except (ValueError, OSError, pd.errors.ParserError, pa.ArrowException) as exc:
        raise _unreadable(data.shown, exc) from exc


def needed_columns(
    header: list[str], columns: Columns, target: str | None, covariates: CovariateColumns
) -> list[str] | None:
    """The columns `to_long` reads from a file with this header; None: all of them (a wide
    table of many series). Reading only these keeps a file's other columns out of memory."""
    wanted = covariates.in_data_file
    if len(set(header)) < len(header):
        return None  # repeated names: pandas tells them apart as it reads them all
    if columns.series_id in header:
        needed = [columns.series_id, columns.timestamp, target or columns.value, *wanted]
    elif target is not None:
        time_column = _time_column(columns, header)
        needed = [c for c in (time_column, target) if c is not None] + list(wanted)
    else:
        return None
    return [c for c in header if c in set(needed)]  # absent ones are named by to_long's checks


def to_long(
    frame: pd.DataFrame,
    columns: Columns,
    target: str | None = None,
    covariates: CovariateColumns | None = None,
    header: list[str] | None = None,
) -> LongTable:
    """Bring a long or wide table to long format with columns series_id, timestamp, value, then
    the covariate columns (and each row's place in the file when there are covariates).

    A table with the series-id column is long (`target`, if given, names its value column);
    otherwise it is wide: a timestamp column and one column per series (`target` picks one).
    `header` names the file's columns when only some were read (`needed_columns`).
    """
    covariates = covariates or CovariateColumns()
    present = header if header is not None else [str(c) for c in frame.columns]
    if covariates.in_data_file:
        frame = frame.assign(**{ROW_COLUMN: np.arange(1, len(frame) + 1)})  # data rows, from 1
    if columns.series_id in present:
        return _from_long(frame, present, columns, target, covariates)
    return _from_wide(frame, present, columns, target, covariates)


def _time_column(columns: Columns, present: list[str]) -> str | None:
    """A wide table's timestamp column: the configured name, else a usual one."""
    return next((c for c in (columns.timestamp, "date", "timestamp", "ds") if c in present), None)


def _from_long(
    frame: pd.DataFrame, present: list[str], columns: Columns, target: str | None, covariates: CovariateColumns
) -> LongTable:
    wanted = covariates.in_data_file
    extra = [ROW_COLUMN] if wanted else []
    value_column = target or columns.value
    covariates.check_names([columns.series_id, columns.timestamp, value_column])
    _require(present, [columns.timestamp, value_column], "long-format data")
    _require(present, wanted, "the data", covariates=True)
    long = frame[[columns.series_id, columns.timestamp, value_column, *wanted, *extra]]
    long.columns = pd.Index(["series_id", "timestamp", "value", *wanted, *extra])
    used = {columns.series_id, columns.timestamp, value_column, *wanted}
    return LongTable(long.assign(series_id=long["series_id"].astype(str)), [c for c in present if c not in used])


def _from_wide(
    frame: pd.DataFrame, present: list[str], columns: Columns, target: str | None, covariates: CovariateColumns
) -> LongTable:
    """One series per column beside the timestamp column (or, with `target`, one series with its
    covariates beside it). Series may be of different lengths: leading and trailing empty cells
    are dropped, empty cells inside a series are refused like any other missing value."""
    wanted = covariates.in_data_file
    extra = [ROW_COLUMN] if wanted else []
    time_column = _time_column(columns, present)
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


def as_instants(long: pd.DataFrame, columns: Columns) -> pd.DataFrame:
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
