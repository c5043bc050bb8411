"""Covariate columns of a training file: which columns are which kind, and their checks.

A past or future-known covariate is a numeric column, finite at every point of its series (the
whole series is used: windows reach into every block). A static covariate is a column constant
within each series, or a column of a small per-series file. Every check fails with one line that
names the series, the column and the row, as the target's checks do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.errors import InvalidInput, MissingColumns, NonFiniteValues, NonNumericValues, ValueOutOfRange, excerpt

# Marks rows with their place in the file, so an error can say where a bad cell is.
ROW_COLUMN = "__row__"
# The names the data is read under (forecast.series.tables.to_long): no covariate may take one.
READ_AS = ("series_id", "timestamp", "value", ROW_COLUMN)
_CATEGORICAL_SUFFIX = ":categorical"
# The network computes in float32 (forecast.model.config.NETWORK_MAX_VALUE): a larger covariate
# could not be scaled on the way in, so training refuses it as serving does.
_LARGEST_VALUE = float(np.finfo(np.float32).max)
# A category is posted as a JSON string of at most this many characters (api/http/schemas.py).
MAX_CATEGORY_CHARS = 100


@dataclass(slots=True)
class CovariateColumns:
    """The covariate columns the user named, by kind. A static covariate named `region:categorical`
    is categorical even when its values are numbers (store 101 is not more than store 100)."""

    past: list[str] = field(default_factory=list)
    future: list[str] = field(default_factory=list)
    static: list[str] = field(default_factory=list)
    static_data: str | None = None  # a per-series file holding the static covariates

    @property
    def static_names(self) -> list[str]:
        return [name.removesuffix(_CATEGORICAL_SUFFIX) for name in self.static]

    @property
    def forced_categorical(self) -> set[str]:
        return {name.removesuffix(_CATEGORICAL_SUFFIX) for name in self.static if name.endswith(_CATEGORICAL_SUFFIX)}

    @property
    def time_varying(self) -> list[str]:
        return [*self.past, *self.future]

    @property
    def in_data_file(self) -> list[str]:
        """The covariate columns the data file itself must hold."""
        return self.time_varying + ([] if self.static_data else self.static_names)

    @property
    def empty(self) -> bool:
        return not (self.past or self.future or self.static)

    def check_names(self, reserved: list[str]) -> None:
        """Each covariate named once, and none of them the id, time or target column, or a name
        the data is read under."""
        names = [*self.past, *self.future, *self.static_names]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InvalidInput(f"covariates named more than once (each has one kind): {repeated}")
        clashing = [name for name in names if name in reserved]
        if clashing:
            raise InvalidInput(f"covariates {clashing} are the id, time or target column; name other columns")
        internal = [name for name in names if name in READ_AS]
        if internal:
            raise InvalidInput(
                f"covariate columns may not be named {internal} (the names the id, time and target are read "
                "under); rename those columns in the file"
            )


@dataclass(slots=True)
class SeriesCovariates:
    """One series' covariates, checked."""

    past: np.ndarray  # (T, P) float64, finite
    future: np.ndarray  # (T, K) float64, finite
    static: dict[str, str | float]  # name -> category (text) or number


def row_label(rows: pd.DataFrame, position: int) -> str:
    """Where a series' `position`-th row sits in the file, as a user finds it."""
    if ROW_COLUMN not in rows.columns:
        return f"position {position}"
    return f"data row {int(rows[ROW_COLUMN].iloc[position])}"


def numeric_covariate(series_id: str, rows: pd.DataFrame, name: str, kind: str) -> np.ndarray:
    """(T,) float64 of one past or future-known covariate, NaN where a value is missing, or one
    line naming the series, the column and the first bad row."""
    raw = rows[name]
    numbers = pd.to_numeric(raw, errors="coerce")
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    not_number = numbers.isna().to_numpy() & raw.notna().to_numpy()
    if not_number.any():
        position = int(np.flatnonzero(not_number)[0])
        raise NonNumericValues(
            f"{kind} covariate {name!r} has {excerpt(raw.iloc[position])} at {rows['timestamp'].iloc[position]} "
            f"({row_label(rows, position)}), which is not a number",
            series_id=series_id,
        )
    infinite = np.isinf(values)
    if infinite.any():
        position = int(np.flatnonzero(infinite)[0])
        raise NonFiniteValues(
            f"{kind} covariate {name!r} is infinite at {rows['timestamp'].iloc[position]} "
            f"({row_label(rows, position)}; {int(infinite.sum())} such row(s)); a missing value is empty or NaN",
            series_id=series_id,
        )
    observed = np.flatnonzero(np.isfinite(values))
    # A missing value is a gap (filled like the target's, forecast/model/missing.py), but a
    # future-known covariate must be known to the end: the test block's horizon reads it.
    last_needed = len(values) - 1 if kind == "future-known" else (observed[0] if len(observed) else 0)
    if len(observed) == 0 or observed[-1] < last_needed:
        position = int(observed[-1]) + 1 if len(observed) else 0
        needed = " (a future-known covariate must be known to the series' end, the test block included)"
        raise NonFiniteValues(
            f"{kind} covariate {name!r} is missing from {rows['timestamp'].iloc[position]} "
            f"({row_label(rows, position)}) on{needed if kind == 'future-known' else ''}; "
            "fill it there, or drop the covariate",
            series_id=series_id,
        )
    large = np.abs(values) > _LARGEST_VALUE
    if large.any():
        position = int(np.flatnonzero(large)[0])
        raise ValueOutOfRange(
            f"{kind} covariate {name!r} has {values[position]:g} at {rows['timestamp'].iloc[position]} "
            f"({row_label(rows, position)}), beyond what the network's float32 can hold; rescale the column",
            series_id=series_id,
        )
    return values


def static_value(series_id: str, rows: pd.DataFrame, name: str) -> str | float:
    """The one value of a static covariate within a series; one line when it varies or is missing."""
    column = rows[name]
    present = column.notna().to_numpy()
    if not present.any():
        raise NonFiniteValues(f"static covariate {name!r} has no value for the series", series_id=series_id)
    if not present.all():
        position = int(np.flatnonzero(~present)[0])
        raise NonFiniteValues(
            f"static covariate {name!r} is missing at {rows['timestamp'].iloc[position]} ({row_label(rows, position)}); "
            "a static covariate has one value on every row of its series",
            series_id=series_id,
        )
    texts = column.astype(str)
    if texts.nunique() > 1:
        first = texts.iloc[0]
        position = int(np.flatnonzero((texts != first).to_numpy())[0])
        raise InvalidInput(
            f"static covariate {name!r} varies within the series: {excerpt(column.iloc[0])} at "
            f"{rows['timestamp'].iloc[0]}, {excerpt(column.iloc[position])} at {rows['timestamp'].iloc[position]} "
            f"({row_label(rows, position)}); a static covariate has one value per series (name it a past or "
            "future-known covariate if it changes over time)",
            series_id=series_id,
        )
    value = column.iloc[0]
    return value if isinstance(value, str) else _number_or_text(value)


def _postable(series_id: str, name: str, value: str | float) -> str | float:
    """A static value a request can post back: a category of at most MAX_CATEGORY_CHARS."""
    if isinstance(value, str) and len(value) > MAX_CATEGORY_CHARS:
        raise InvalidInput(
            f"static covariate {name!r} has a category of {len(value)} characters ({excerpt(value)}); a category "
            f"has at most {MAX_CATEGORY_CHARS}, as a request can post it",
            series_id=series_id,
        )
    return value


def _number_or_text(value: object) -> str | float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return number


def series_covariates(
    series_id: str, rows: pd.DataFrame, columns: CovariateColumns, static_table: pd.DataFrame | None
) -> SeriesCovariates:
    """One series' covariates from its rows (and the per-series file), all checked."""
    past = [numeric_covariate(series_id, rows, name, "past") for name in columns.past]
    future = [numeric_covariate(series_id, rows, name, "future-known") for name in columns.future]
    static: dict[str, str | float] = {}
    for name in columns.static_names:
        if static_table is not None:
            if series_id not in static_table.index:
                raise MissingColumns(
                    f"the static covariates file {columns.static_data!r} has no row for the series", series_id=series_id
                )
            static[name] = _postable(series_id, name, _number_or_text(static_table.at[series_id, name]))
        else:
            static[name] = _postable(series_id, name, static_value(series_id, rows, name))
    length = len(rows)
    return SeriesCovariates(
        past=np.stack(past, axis=1) if past else np.zeros((length, 0)),
        future=np.stack(future, axis=1) if future else np.zeros((length, 0)),
        static=static,
    )


def read_static_table(path: str, id_column: str, names: list[str]) -> pd.DataFrame:
    """The per-series file of static covariates, indexed by series id, one row per series."""
    source = Path(path)
    try:
        table = pd.read_parquet(source) if source.suffix.lower() in {".parquet", ".pq"} else pd.read_csv(source)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InvalidInput(f"cannot read the static covariates file {path!r}: {str(exc).splitlines()[0]}") from exc
    missing = [name for name in [id_column, *names] if name not in table.columns]
    if missing:
        raise MissingColumns(
            f"the static covariates file {path!r} lacks columns {missing}; found columns {[str(c) for c in table.columns][:20]}"
        )
    table = table.assign(**{id_column: table[id_column].astype(str)})
    repeated = table[id_column][table[id_column].duplicated()]
    if len(repeated):
        raise InvalidInput(f"the static covariates file {path!r} has two rows for series {repeated.iloc[0]!r}")
    empty = table[names].isna()
    if empty.to_numpy().any():
        row, column = (int(i) for i in np.argwhere(empty.to_numpy())[0])
        raise NonFiniteValues(
            f"the static covariates file {path!r} has no {names[column]!r} for series {table[id_column].iloc[row]!r}"
        )
    return table.set_index(id_column)[names]
