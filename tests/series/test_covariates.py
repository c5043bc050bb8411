"""Covariate columns of a training file (forecast/series/covariates.py through load_dataset): read
by kind from the long format, beside the target of a wide table, or from a per-series file;
every bad one refused with one line that names the series, the column and the row; the
columns nobody named reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.errors import InvalidInput, MissingColumns, NonFiniteValues, NonNumericValues, ValueOutOfRange
from forecast.series.covariates import CovariateColumns
from forecast.series.dataset import load_dataset
from tests.factories import covariate_frame

KINDS = CovariateColumns(past=["load"], future=["temperature"], static=["region"])


def _csv(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _one_line(error: pytest.ExceptionInfo[Exception]) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_long_format_covariates_are_read_by_kind(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50)
    dataset = load_dataset(_csv(tmp_path, frame), covariates=KINDS)

    first = dataset.series[0]
    rows = frame[frame["series_id"] == "a"]
    np.testing.assert_array_equal(first.past[:, 0], rows["load"].to_numpy())
    np.testing.assert_array_equal(first.future[:, 0], rows["temperature"].to_numpy())
    assert (first.static, dataset.series[1].static) == ({"region": "north"}, {"region": "south"})
    assert dataset.unused_columns == []


def test_the_same_file_without_covariate_flags_reports_its_unused_columns(tmp_path: Path) -> None:
    dataset = load_dataset(_csv(tmp_path, covariate_frame(n_points=50)))
    assert dataset.unused_columns == ["temperature", "load", "region"]
    assert dataset.series[0].past is None


def test_a_wide_table_of_one_series_takes_covariates_beside_its_target() -> None:
    dataset = load_dataset("etth1", target="OT", covariates=CovariateColumns(past=["HUFL", "LULL"]))
    (series,) = dataset.series
    assert series.past is not None and series.past.shape == (len(series), 2)
    assert dataset.unused_columns == ["HULL", "MUFL", "MULL", "LUFL"]


def test_a_wide_table_of_several_series_has_no_covariates(tmp_path: Path) -> None:
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=10, freq="h"), "a": 1.0, "b": 2.0, "t": 3.0})
    with pytest.raises(InvalidInput, match="need --target"):
        load_dataset(_csv(tmp_path, frame), covariates=CovariateColumns(future=["t"]))


def test_a_covariate_missing_from_the_file_is_named(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50).drop(columns=["temperature"])
    with pytest.raises(MissingColumns) as error:
        load_dataset(_csv(tmp_path, frame), covariates=KINDS)
    assert "['temperature']" in _one_line(error)


def test_infinity_inside_a_covariate_names_the_series_column_and_row(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50)
    frame.loc[57, "load"] = np.inf  # series b's 8th row; the file's 58th data row
    with pytest.raises(NonFiniteValues) as error:
        load_dataset(_csv(tmp_path, frame), covariates=KINDS)
    message = _one_line(error)
    assert error.value.series_id == "b"
    assert "'load' is infinite" in message and "row 58" in message and "2024-01-01 07:00:00" in message


def test_a_covariate_gap_is_kept_as_missing(tmp_path: Path) -> None:
    """Empty covariate cells inside the series are gaps, as the target's are: they load as NaN
    (filled and read by the model, forecast/model/encoding.py), not as an error."""
    frame = covariate_frame(n_points=50)
    frame.loc[[57, 60], "load"] = np.nan
    frame.loc[20, "temperature"] = np.nan
    dataset = load_dataset(_csv(tmp_path, frame), covariates=KINDS)
    b = next(series for series in dataset.series if series.series_id == "b")
    load = b.past_values[:, 0]
    assert np.isnan(load[[7, 10]]).all() and np.isfinite(np.delete(load, [7, 10])).all()
    a = next(series for series in dataset.series if series.series_id == "a")
    assert np.isnan(a.future_values[20, 0])


def test_a_future_covariate_that_stops_before_the_test_block_says_it_must_cover_it(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50)
    frame.loc[45:49, "temperature"] = np.nan  # series a's last five hours
    with pytest.raises(NonFiniteValues) as error:
        load_dataset(_csv(tmp_path, frame), covariates=KINDS)
    assert error.value.series_id == "a"
    assert "test block" in _one_line(error) and "'temperature'" in str(error.value)


def test_text_in_a_numeric_covariate_is_named(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50).astype({"temperature": object})
    frame.loc[3, "temperature"] = "warm"
    with pytest.raises(NonNumericValues, match=r"'warm'.*row 4"):
        load_dataset(_csv(tmp_path, frame), covariates=KINDS)


def test_a_static_covariate_that_varies_within_a_series_is_refused(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50)
    frame.loc[10, "region"] = "east"
    with pytest.raises(InvalidInput) as error:
        load_dataset(_csv(tmp_path, frame), covariates=KINDS)
    message = _one_line(error)
    assert error.value.series_id == "a"
    assert "varies within the series" in message and "'east'" in message and "row 11" in message


def test_static_covariates_may_come_from_a_per_series_file(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50).drop(columns=["region"])
    statics = _csv(tmp_path, pd.DataFrame({"series_id": ["a", "b"], "size": [3, 5], "store": [101, 102]}), "s.csv")
    kinds = CovariateColumns(static=["size", "store:categorical"], static_data=str(statics))
    dataset = load_dataset(_csv(tmp_path, frame), covariates=kinds)
    assert dataset.series[1].static == {"size": 5.0, "store": 102.0}
    assert kinds.forced_categorical == {"store"}

    missing_b = _csv(tmp_path, pd.DataFrame({"series_id": ["a"], "size": [3], "store": [1]}), "s2.csv")
    with pytest.raises(MissingColumns) as error:
        load_dataset(_csv(tmp_path, frame), covariates=CovariateColumns(static=["size"], static_data=str(missing_b)))
    assert error.value.series_id == "b" and "no row for the series" in str(error.value)


def test_a_column_named_twice_or_as_the_target_is_refused(tmp_path: Path) -> None:
    path = _csv(tmp_path, covariate_frame(n_points=50))
    with pytest.raises(InvalidInput, match="more than once"):
        load_dataset(path, covariates=CovariateColumns(past=["load"], future=["load"]))
    with pytest.raises(InvalidInput, match="id, time or target"):
        load_dataset(path, covariates=CovariateColumns(past=["value"]))


def test_covariates_change_the_data_fingerprint_and_plain_files_keep_theirs(tmp_path: Path) -> None:
    path = _csv(tmp_path, covariate_frame(n_points=50))
    plain = load_dataset(path)
    with_covariates = load_dataset(path, covariates=KINDS)
    changed = covariate_frame(n_points=50)
    changed.loc[0, "temperature"] += 1.0
    assert plain.fingerprint() != with_covariates.fingerprint()
    assert (
        with_covariates.fingerprint() != load_dataset(_csv(tmp_path, changed, "c.csv"), covariates=KINDS).fingerprint()
    )
    assert plain.fingerprint() == load_dataset(path).fingerprint()


def test_a_covariate_may_not_take_a_name_the_data_is_read_under(tmp_path: Path) -> None:
    """The long table is read as series_id, timestamp, value: a covariate column named like one of
    them (the target being another column) would collide there."""
    frame = covariate_frame(n_points=50).rename(columns={"value": "y", "load": "value"})
    with pytest.raises(InvalidInput, match=r"may not be named \['value'\]"):
        load_dataset(_csv(tmp_path, frame), target="y", covariates=CovariateColumns(past=["value"]))


def test_a_covariate_beyond_float32_is_refused_at_its_row(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50)
    frame.loc[5, "temperature"] = 1e39
    with pytest.raises(ValueOutOfRange, match="data row 6"):
        load_dataset(_csv(tmp_path, frame), covariates=KINDS)


def test_a_category_too_long_to_post_is_refused(tmp_path: Path) -> None:
    frame = covariate_frame(n_points=50)
    frame.loc[frame["series_id"] == "a", "region"] = "x" * 101
    with pytest.raises(InvalidInput, match="category of 101 characters"):
        load_dataset(_csv(tmp_path, frame), covariates=KINDS)
