"""Validating time series: a file's long table (`forecast.series.tables`) split into series on
their frequency's grid, with their covariates, checked up front.

Every check fails with one line that names the series and the problem, so that a bad file is
refused before any training starts and a bad request before any model runs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.errors import (
    BadTimestamps,
    FrequencyError,
    InvalidInput,
    SeriesTooShort,
    TooLittleSignal,
)
from forecast.series.covariates import CovariateColumns, read_static_table, series_covariates
from forecast.series.frequency import normalize_freq
from forecast.series.parsing import parse_timestamps, parse_values
from forecast.series.spacing import MAX_MISSING_FRACTION, check_signal, grid_positions, infer_freq
from forecast.series.tables import Columns, as_instants, needed_columns, open_data_file, read_table, to_long

logger = logging.getLogger(__name__)


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
    # series of one point, left out together before parsing (training only): no window of any block
    # (an observed point in its input and one in its targets); how many, and the first few ids
    windowless: int = 0
    windowless_ids: list[str] = field(default_factory=list)

    @property
    def median_history(self) -> int:
        """The median series' length, its padding not counted."""
        return int(np.median([len(s) - s.padding for s in self.series]))

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


def _trainable(long: pd.DataFrame, needed_points: int, source: str) -> tuple[pd.DataFrame, pd.Index]:
    """The rows of the series training can use, and how many series were left out, decided by
    counting in one vectorised step before any series is parsed (a million one-point series
    would take half an hour one by one). SeriesTooShort when no series may span more than
    `needed_points` steps: n rows span at most n / (1 - MAX_MISSING_FRACTION) steps (more missing
    is too little signal). A series of one point gives no window to any block (each needs an
    observed point in its input and one in its targets): left out, returned by id. (Longer
    series with too little signal are left out one by one, each named with why.)"""
    series = long["series_id"]
    rows = series.groupby(series, sort=False).size()
    most = int(rows.max()) if len(rows) else 0
    if round(most / (1 - MAX_MISSING_FRACTION), 6) <= needed_points:  # 6 / 0.1 is 60.000000000000014
        raise SeriesTooShort(
            f"{source}: no series is long enough: the longest of its {len(rows):,} series has {most:,} rows, and a "
            f"series needs more than {needed_points:,} points to give a window to every block (the validation and "
            "test blocks together); lower --val-size and --test-size (each at least the horizon), or add history"
        )
    windowless = rows.index[rows < 2]
    if len(windowless) == 0:
        return long, windowless
    return long[~series.isin(windowless)], windowless


def load_dataset(
    path: str | Path,
    *,
    columns: Columns | None = None,
    target: str | None = None,
    freq: str | None = None,
    covariates: CovariateColumns | None = None,
    leave_out_bad: bool = False,
    needed_points: int | None = None,
) -> Dataset:
    """The file's series, validated. Only the columns the format needs are read. With
    `needed_points` (training), the rows are counted in one vectorised step before any series is
    parsed: a file none of whose series can be longer than that is refused, and series that can
    give no window are left out (`_trainable`)."""
    columns = columns or Columns()
    covariates = covariates or CovariateColumns()
    data = open_data_file(path)
    frame = read_table(data, needed_columns(data.header, columns, target, covariates))
    long = to_long(frame, columns, target, covariates, data.header)
    del frame
    windowless = pd.Index([])
    if needed_points is not None:
        long.frame, windowless = _trainable(long.frame, needed_points, str(path))
    long.frame = as_instants(long.frame, columns)
    static_table = None
    if covariates.static_data:
        static_table = read_static_table(covariates.static_data, columns.series_id, covariates.static_names)
    dataset = validate_frame(long.frame, freq, str(path), covariates, static_table, leave_out_bad=leave_out_bad)
    dataset.unused_columns = long.unused_columns
    dataset.windowless, dataset.windowless_ids = len(windowless), [str(i) for i in windowless[:3]]
    return dataset
