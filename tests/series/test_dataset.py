"""Loading and validation: long and wide tables from CSV or Parquet, the bundled ETTh1, and one
specific, readable error per kind of bad input, naming the series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.errors import (
    BadTimestamps,
    FrequencyError,
    InvalidInput,
    MissingColumns,
    NonFiniteValues,
    NonNumericValues,
    SeriesTooShort,
    TooLittleSignal,
)
from forecast.series.dataset import Dataset, load_dataset
from forecast.series.frequency import Cadence, cadence
from forecast.series.spacing import grid_positions
from forecast.series.tables import Columns


def _long_frame() -> pd.DataFrame:
    stamps = pd.date_range("2024-03-01", periods=6, freq="D")
    return pd.DataFrame(
        {
            "series_id": ["store-1"] * 6 + ["store-2"] * 6,
            "timestamp": list(stamps) * 2,
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        }
    )


def _write_csv(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _write_long_csv(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Rows of raw text, exactly as a user's file would hold them."""
    path = tmp_path / "long.csv"
    path.write_text("series_id,timestamp,value\n" + "".join(f"{s},{t},{v}\n" for s, t, v in rows))
    return path


def _hourly_rows(series_id: str, values: list[str], start: str = "2024-01-01 00:00") -> list[tuple[str, str, str]]:
    stamps = pd.date_range(start, periods=len(values), freq="h")
    return [(series_id, str(stamp), value) for stamp, value in zip(stamps, values, strict=True)]


def _assert_long_dataset(dataset: Dataset) -> None:
    assert dataset.freq == "D"
    assert [s.series_id for s in dataset.series] == ["store-1", "store-2"]
    np.testing.assert_array_equal(dataset.series[1].values, [10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    assert dataset.series[0].values.dtype == np.float64
    assert dataset.series[0].timestamps[0] == pd.Timestamp("2024-03-01")
    assert dataset.n_points == 12


def test_long_csv_loads(tmp_path: Path) -> None:
    _assert_long_dataset(load_dataset(_write_csv(tmp_path, _long_frame())))


def test_for_training_series_of_one_point_are_left_out_in_one_step(tmp_path: Path) -> None:
    """A long export with 100,000 one-point series beside two real ones: the one-point series can
    give no window (an observed point in the input and one in the targets), so training leaves
    them out, counted, before any of them is parsed; the real series load as alone."""
    many = pd.DataFrame({"series_id": [f"s{i}" for i in range(100_000)], "timestamp": "2024-03-01", "value": 1.0})
    path = _write_csv(tmp_path, pd.concat([_long_frame(), many]))

    dataset = load_dataset(path, needed_points=4)

    _assert_long_dataset(dataset)
    assert dataset.windowless == 100_000 and dataset.windowless_ids == ["s0", "s1", "s2"] and dataset.left_out == []
    with pytest.raises(SeriesTooShort, match="no series is long enough: the longest of its 100,002 series has 6 rows"):
        load_dataset(path, needed_points=60)


def test_long_parquet_loads_the_same_as_csv(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    _long_frame().to_parquet(path, index=False)
    from_parquet = load_dataset(path)
    _assert_long_dataset(from_parquet)
    assert from_parquet.fingerprint() == load_dataset(_write_csv(tmp_path, _long_frame())).fingerprint()


def test_configurable_column_names(tmp_path: Path) -> None:
    frame = _long_frame().rename(columns={"series_id": "shop", "timestamp": "day", "value": "sales"})
    path = _write_csv(tmp_path, frame)
    _assert_long_dataset(load_dataset(path, columns=Columns(series_id="shop", timestamp="day", value="sales")))


def test_wide_csv_loads_one_series_per_column(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"date": pd.date_range("2024-01-01", periods=5, freq="h"), "a": [1, 2, 3, 4, 5], "b": [5, 4, 3, 2, 1.5]}
    )
    dataset = load_dataset(_write_csv(tmp_path, frame))
    assert dataset.freq == "h"
    assert {s.series_id: s.values.tolist() for s in dataset.series} == {
        "a": [1, 2, 3, 4, 5],
        "b": [5, 4, 3, 2, 1.5],
    }
    only_b = load_dataset(_write_csv(tmp_path, frame), target="b")
    assert [s.series_id for s in only_b.series] == ["b"]


def test_wide_table_with_ragged_series_trims_leading_and_trailing_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(
        "date,early,late,full\n"
        "2024-01-01,1,,10\n"
        "2024-01-02,2,,11\n"
        "2024-01-03,3,7,12\n"
        "2024-01-04,,8,13\n"
        "2024-01-05,,9,14\n"
    )
    dataset = load_dataset(path)
    by_id = {s.series_id: s for s in dataset.series}
    assert by_id["early"].values.tolist() == [1, 2, 3]
    assert list(by_id["early"].timestamps.day) == [1, 2, 3]
    assert by_id["late"].values.tolist() == [7, 8, 9]
    assert list(by_id["late"].timestamps.day) == [3, 4, 5]
    assert len(by_id["full"]) == 5


def test_wide_table_with_a_hole_inside_a_series_is_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("date,ok,holey\n2024-01-01,1,1\n2024-01-02,2,\n2024-01-03,3,3\n2024-01-04,4,4\n")
    holey = {s.series_id: s for s in load_dataset(path).series}["holey"]
    assert len(holey) == 4 and np.isnan(holey.values).tolist() == [False, True, False, False]


def test_bundled_etth1_loads_its_oil_temperature_target() -> None:
    dataset = load_dataset("etth1", target="OT")
    assert dataset.freq == "h"
    assert [s.series_id for s in dataset.series] == ["OT"]
    series = dataset.series[0]
    assert len(series) == 17420
    assert series.timestamps[0] == pd.Timestamp("2016-07-01 00:00:00")
    assert bool(np.isfinite(series.values).all())


# --- each kind of bad input, its own exception, naming the series ---------------------------------


def test_missing_columns_lists_what_was_found(tmp_path: Path) -> None:
    path = _write_csv(tmp_path, _long_frame().drop(columns=["value"]))
    with pytest.raises(MissingColumns) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert "'value'" in message and "series_id" in message and "timestamp" in message


def test_no_timestamp_column_at_all_is_missing_columns(tmp_path: Path) -> None:
    path = _write_csv(tmp_path, pd.DataFrame({"when": ["2024-01-01"], "x": [1.0]}))
    with pytest.raises(MissingColumns, match=r"found columns.*'when'.*'x'"):
        load_dataset(path)


def test_wide_target_that_does_not_exist_is_missing_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame({"date": pd.date_range("2024-01-01", periods=4, freq="D"), "a": [1, 2, 3, 4]})
    with pytest.raises(MissingColumns, match=r"'OT'.*found columns.*'a'"):
        load_dataset(_write_csv(tmp_path, frame), target="OT")


def test_a_value_that_is_not_a_number_is_named_with_its_series(tmp_path: Path) -> None:
    rows = _hourly_rows("good", ["1", "2", "3", "4"]) + _hourly_rows("sensor-7", ["1.5", "2.5", "oops", "4"])
    with pytest.raises(NonNumericValues) as caught:
        load_dataset(_write_long_csv(tmp_path, rows))
    message = str(caught.value)
    assert caught.value.series_id == "sensor-7"
    assert "'sensor-7'" in message and "'oops'" in message and "2024-01-01 02:00:00" in message


@pytest.mark.parametrize("bad", ["inf", "-inf"])
def test_infinite_values_are_refused(tmp_path: Path, bad: str) -> None:
    rows = _hourly_rows("meter-3", ["1", "2", bad, "4", "5"])
    with pytest.raises(NonFiniteValues) as caught:
        load_dataset(_write_long_csv(tmp_path, rows))
    assert caught.value.series_id == "meter-3"
    assert "'meter-3'" in str(caught.value) and "2024-01-01 02:00:00" in str(caught.value)


@pytest.mark.parametrize("missing", ["nan", "", "NULL"])
def test_missing_values_are_gaps(tmp_path: Path, missing: str) -> None:
    rows = _hourly_rows("meter-3", ["1", "2", missing, "4", "5"])
    (series,) = load_dataset(_write_long_csv(tmp_path, rows)).series
    assert np.isnan(series.values).tolist() == [False, False, True, False, False]


def test_a_series_with_too_little_signal_is_refused_with_the_fraction_missing(tmp_path: Path) -> None:
    rows = _hourly_rows("sparse", ["1", *[""] * 19, "2"])
    with pytest.raises(BadTimestamps, match=r"'sparse'.*too little signal: 19 of the 21 points .*at most 90%"):
        load_dataset(_write_long_csv(tmp_path, [*rows[:10], *rows[10:]]), freq="h")
    with pytest.raises(BadTimestamps, match=r"'empty'.*no observed value"):
        load_dataset(_write_long_csv(tmp_path, _hourly_rows("empty", ["", "", ""])), freq="h")


def test_a_series_with_too_little_signal_is_left_out_and_the_others_kept(tmp_path: Path) -> None:
    """A file is refused only when nothing in it can be forecast: the unusable series are left
    out, each with its reason, for the job to report."""
    rows = _hourly_rows("sparse", ["1", *[""] * 19, "2"]) + _hourly_rows("empty", ["", "", ""])
    rows += _hourly_rows("fine", ["1", "2", "", "4"])
    dataset = load_dataset(_write_long_csv(tmp_path, rows), freq="h")
    assert [s.series_id for s in dataset.series] == ["fine"]
    assert [(error.series_id, "too little signal" in str(error)) for error in dataset.left_out] == [
        ("sparse", True),
        ("empty", False),
    ]


def test_duplicate_timestamps_are_named(tmp_path: Path) -> None:
    rows = [
        ("dup", t, v)
        for t, v in [
            ("2024-01-01 00:00", "1"),
            ("2024-01-01 01:00", "2"),
            ("2024-01-01 01:00", "3"),
            ("2024-01-01 02:00", "4"),
        ]
    ]
    with pytest.raises(BadTimestamps, match=r"'dup'.*duplicate timestamp 2024-01-01 01:00:00"):
        load_dataset(_write_long_csv(tmp_path, rows))


def test_unsorted_timestamps_are_named(tmp_path: Path) -> None:
    rows = [
        ("shuffled", t, v)
        for t, v in [
            ("2024-01-01 00:00", "1"),
            ("2024-01-01 02:00", "2"),
            ("2024-01-01 01:00", "3"),
            ("2024-01-01 03:00", "4"),
        ]
    ]
    with pytest.raises(BadTimestamps, match=r"'shuffled'.*unsorted timestamp 2024-01-01 01:00:00"):
        load_dataset(_write_long_csv(tmp_path, rows))


def test_unparseable_timestamp_is_named(tmp_path: Path) -> None:
    rows = [*_hourly_rows("x1", ["1", "2", "3"]), ("x1", "not-a-date", "4")]
    with pytest.raises(BadTimestamps, match=r"'x1'.*'not-a-date'"):
        load_dataset(_write_long_csv(tmp_path, rows))


def test_irregular_spacing_without_a_frequency_cannot_be_inferred(tmp_path: Path) -> None:
    stamps = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 05:30", "2024-01-01 06:10"]
    rows = [("gappy", t, str(i)) for i, t in enumerate(stamps)]
    with pytest.raises(FrequencyError) as caught:
        load_dataset(_write_long_csv(tmp_path, rows))
    assert caught.value.series_id == "gappy"
    assert "2024-01-01 05:30:00" in str(caught.value)  # where the spacing breaks


def test_missing_timestamps_are_gaps_and_one_off_the_grid_is_named(tmp_path: Path) -> None:
    stamps = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 03:00", "2024-01-01 04:00"]
    rows = [("gappy", t, str(i)) for i, t in enumerate(stamps)]
    for freq in ("h", None):
        (series,) = load_dataset(_write_long_csv(tmp_path, rows), freq=freq).series
        assert series.timestamps[2] == pd.Timestamp("2024-01-01 02:00") and np.isnan(series.values[2])
    rows[2] = ("gappy", "2024-01-01 02:30", "2")
    with pytest.raises(BadTimestamps, match=r"'gappy'.*2024-01-01 02:30:00 \(position 2\) is not on the 'h' grid"):
        load_dataset(_write_long_csv(tmp_path, rows), freq="h")


def test_calendars_users_bring_are_read_on_their_own_grid(tmp_path: Path) -> None:
    # business days with two holidays left out: business days, the holidays gaps
    days = pd.bdate_range("2024-01-01", periods=40).delete([7, 25])
    rows = [("shop", str(t.date()), str(i)) for i, t in enumerate(days)]
    # weekday-only 5-minute data: read on the 5-minute grid, the weekends as gaps
    minutes = pd.date_range("2024-01-01", periods=288 * 10, freq="5min")
    minutes = minutes[minutes.dayofweek < 5]
    dataset = load_dataset(_write_long_csv(tmp_path, rows))
    assert dataset.freq == "B" and np.isnan(dataset.series[0].values).sum() == 2
    intraday = [("desk", str(t), "1") for t in minutes]
    assert load_dataset(_write_long_csv(tmp_path, intraday)).freq == "5min"
    # business hours (9:00 to 17:00 on weekdays) with a closed day: pandas' 'bh', the day a gap,
    # with the day of opening hours as its season and the hour and weekday as its calendar
    hours = pd.date_range("2024-01-01 09:00", periods=8 * 20, freq="bh").delete(range(40, 48))
    office = load_dataset(_write_long_csv(tmp_path, [("office", str(t), "1") for t in hours]))
    assert office.freq == "bh" and np.isnan(office.series[0].values).sum() == 8
    assert cadence("bh") == Cadence(8, ("hour_of_day", "day_of_week"), (8, 40))
    # weekly series anchored on different weekdays share one 7-day step, each on its own weekday
    mondays = pd.date_range("2024-01-01", periods=10, freq="W-MON")
    fridays = pd.date_range("2024-01-05", periods=10, freq="W-FRI")
    weekly = [("m", str(t.date()), "1") for t in mondays] + [("f", str(t.date()), "2") for t in fridays]
    assert load_dataset(_write_long_csv(tmp_path, weekly)).freq == "7D"
    with pytest.raises(BadTimestamps, match=r"'f'.*all on W-FRI: pass --freq W-FRI, or --freq 7D"):
        load_dataset(_write_long_csv(tmp_path, weekly), freq="W-MON")
    assert load_dataset(_write_long_csv(tmp_path, weekly), freq="7D").freq == "7D"


def test_a_series_too_short_to_show_a_frequency_takes_the_files(tmp_path: Path) -> None:
    rows = _hourly_rows("long", ["1", "2", "3", "4", "5"]) + _hourly_rows("one-point", ["7"])
    dataset = load_dataset(_write_long_csv(tmp_path, rows))
    assert dataset.freq == "h" and [len(s) for s in dataset.series] == [5, 1]


def test_series_of_different_frequencies_are_refused(tmp_path: Path) -> None:
    rows = _hourly_rows("hourly", ["1", "2", "3", "4"]) + [
        ("daily", str(t.date()), "1") for t in pd.date_range("2024-01-01", periods=4, freq="D")
    ]
    with pytest.raises(FrequencyError, match="different frequencies"):
        load_dataset(_write_long_csv(tmp_path, rows))


def test_unknown_frequency_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FrequencyError, match="'fortnightly'"):
        load_dataset(_write_long_csv(tmp_path, _hourly_rows("a", ["1", "2", "3"])), freq="fortnightly")


def test_missing_file_and_unknown_type_are_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(InvalidInput, match="unknown file type"):
        load_dataset(odd)


# --- fingerprint ---------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_follows_every_value(tmp_path: Path) -> None:
    path = _write_csv(tmp_path, _long_frame())
    reference = load_dataset(path).fingerprint()
    assert load_dataset(path).fingerprint() == reference  # same data, same digest
    assert len(reference) == 64

    changed_value = _long_frame()
    changed_value.loc[8, "value"] += 1e-9
    assert load_dataset(_write_csv(tmp_path, changed_value, "v.csv")).fingerprint() != reference

    shifted = _long_frame()
    shifted["timestamp"] = shifted["timestamp"] + pd.Timedelta(days=1)
    assert load_dataset(_write_csv(tmp_path, shifted, "t.csv")).fingerprint() != reference

    renamed = _long_frame().replace({"series_id": {"store-2": "store-3"}})
    assert load_dataset(_write_csv(tmp_path, renamed, "r.csv")).fingerprint() != reference


@pytest.mark.parametrize("freq", ["h", "B", "bh"])
def test_timestamps_centuries_apart_are_too_little_signal_not_unsorted(freq: str) -> None:
    """Two instants of pandas' range can be further apart than int64 nanoseconds hold (292
    years): the order is compared, not subtracted, and a calendar grid is bounded before it is
    built (business hours over 560 years are a million points)."""
    stamps = pd.DatetimeIndex(["1700-01-04 09:00", "1700-01-04 10:00", "1700-01-04 11:00", "2260-01-05 09:00"])
    with pytest.raises(TooLittleSignal, match=r"'far'.*too little signal"):
        grid_positions("far", stamps, freq)


@pytest.mark.parametrize("freq", ["QS", "MS", "B"])
def test_a_long_calendar_series_is_on_its_grid(tmp_path: Path, freq: str) -> None:
    """The bound on a calendar grid (ten times the timestamps) may reach past pandas' last
    instant, 2262: 210 quarters from 1956 are still read on their grid, a gap as a gap."""
    stamps = pd.date_range("1956-01-01", periods=210 if freq != "B" else 30_000, freq=freq)
    rows = [("beer", str(t.date()), str(i)) for i, t in enumerate(stamps)]
    dataset = load_dataset(_write_long_csv(tmp_path, rows[:100] + rows[101:]), freq=freq)
    assert len(dataset.series[0].values) == len(stamps) and np.isnan(dataset.series[0].values).sum() == 1


def test_a_series_too_sparse_to_show_a_frequency_is_left_out_without_freq(tmp_path: Path) -> None:
    """Without --freq, a series whose few timestamps show no frequency takes the others' grid,
    where its too little signal leaves it out: the file still trains."""
    rows = [("a", str(t), "1") for t in pd.date_range("2024-01-01", periods=500, freq="h")]
    sparse = [*pd.date_range("2024-01-01", periods=5, freq="h"), pd.Timestamp("2024-03-01")]
    rows += [("off", str(t), "2") for t in sparse]
    dataset = load_dataset(_write_long_csv(tmp_path, rows))
    assert dataset.freq == "h" and [s.series_id for s in dataset.series] == ["a"]
    assert [error.series_id for error in dataset.left_out] == ["off"]
