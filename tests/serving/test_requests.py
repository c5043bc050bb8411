"""Serving-side preparation: a posted series, given by timestamps or by start and frequency, is cut
into the same window with the same calendar features as in training; every bad series is refused
with an error that names it; a request's horizon and levels are checked against the version; and
the horizon and the levels of a request are checked against the version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast.errors import BadTimestamps, FrequencyError, InvalidRequest, NonFiniteValues
from forecast.registry.manifest import Manifest
from forecast.series.features import calendar_features
from forecast.serving.requests import check_request, prepare_series
from tests.factories import make_manifest
from tests.support.requests import HORIZON, INPUT_SIZE, hourly_values, iso, prepare


@pytest.mark.parametrize(
    ("freq", "features", "first"),
    [
        ("h", ["hour_of_day", "day_of_week"], "2024-01-01T20:00:00"),
        ("15min", ["minute_of_hour", "hour_of_day"], "2024-03-31T23:00:00"),
        ("W-SUN", ["week_of_year"], "2023-11-05T00:00:00"),
        ("MS", ["month_of_year"], "2023-09-01T00:00:00"),
    ],
)
def test_timestamps_and_start_with_freq_give_the_same_window(freq: str, features: list[str], first: str) -> None:
    manifest = make_manifest(freq=freq, features=features, input_size=INPUT_SIZE, horizon=HORIZON)
    values = hourly_values(10)
    grid = pd.date_range(first, periods=len(values) + HORIZON, freq=freq)
    by_stamps = prepare(manifest, values, timestamps=iso(grid[: len(values)]))
    by_start = prepare(manifest, values, start=first, freq=freq)

    for prepared in (by_stamps, by_start):
        np.testing.assert_array_equal(prepared.window.history, np.array(values[-INPUT_SIZE:], dtype=np.float64))
        np.testing.assert_array_equal(
            prepared.window.features, calendar_features(grid[len(values) - INPUT_SIZE : len(values)], features)
        )
        assert list(prepared.future) == list(grid[len(values) :])
        assert prepared.series_id == "a"
    # float64 until scaled: a level of 1e8 keeps steps that float32 would round away
    assert by_stamps.window.history.dtype == np.float64


def test_a_shorter_horizon_gives_fewer_future_timestamps(manifest: Manifest) -> None:
    prepared = prepare(manifest, hourly_values(8), start="2024-01-01T00:00:00", horizon=2)
    assert list(prepared.future) == [pd.Timestamp("2024-01-01T08:00:00"), pd.Timestamp("2024-01-01T09:00:00")]


@pytest.mark.parametrize("via", ["timestamps", "start"])
def test_zoned_timestamps_are_converted_to_utc(manifest: Manifest, via: str) -> None:
    values = hourly_values(8)
    zoned = [f"2024-01-01T{hour:02d}:00:00+01:00" for hour in range(1, 9)]  # 00:00 to 07:00 UTC
    given = {"timestamps": zoned} if via == "timestamps" else {"start": zoned[0]}
    prepared = prepare(manifest, values, **given)
    utc = pd.date_range("2024-01-01T00:00:00", periods=8, freq="h")
    assert prepared.future[0] == pd.Timestamp("2024-01-01T08:00:00")
    assert prepared.future.dtype == np.dtype("datetime64[ns]")  # tz-naive UTC
    np.testing.assert_array_equal(prepared.window.features, calendar_features(utc[-INPUT_SIZE:], manifest.features))


def test_an_equal_spelling_of_the_frequency_is_accepted(manifest: Manifest) -> None:
    prepared = prepare(manifest, hourly_values(8), start="2024-01-01T00:00:00", freq="60min")
    assert len(prepared.future) == HORIZON


def test_a_different_frequency_is_refused_naming_the_series(manifest: Manifest) -> None:
    with pytest.raises(FrequencyError) as refused:
        prepare_series(manifest, "sensor-7", hourly_values(8), timestamps=None, start="2024-01-01", freq="D", horizon=2)
    assert refused.value.series_id == "sensor-7"
    assert "'sensor-7'" in str(refused.value) and "'D'" in str(refused.value) and "'h'" in str(refused.value)


def test_a_start_off_an_anchored_frequency_is_refused() -> None:
    manifest = make_manifest(freq="W-SUN", features=["week_of_year"], input_size=INPUT_SIZE, horizon=HORIZON)
    with pytest.raises(FrequencyError, match=r"2024-01-03.*'W-SUN'") as refused:
        prepare(manifest, hourly_values(8), start="2024-01-03", freq="W-SUN")  # a Wednesday
    assert refused.value.series_id == "a"
    assert prepare(manifest, hourly_values(8), start="2024-01-07", freq="W-SUN").future[0] == pd.Timestamp("2024-03-03")


def test_weekly_timestamps_on_another_weekday_are_refused() -> None:
    manifest = make_manifest(freq="W-SUN", features=["week_of_year"], input_size=INPUT_SIZE, horizon=HORIZON)
    wednesdays = pd.date_range("2024-01-03", periods=8, freq="W-WED")
    with pytest.raises(BadTimestamps, match="series 'a'"):
        prepare(manifest, hourly_values(8), timestamps=iso(wednesdays))


def test_a_series_shorter_than_the_input_size_is_padded_and_said_so(manifest: Manifest) -> None:
    short = prepare(manifest, hourly_values(2), start="2024-01-01T00:00:00")
    assert short.padded == INPUT_SIZE - 2 and short.missing == 0
    history = short.window.history
    assert len(history) == INPUT_SIZE and np.isnan(history[:-2]).all() and history[-2:].tolist() == hourly_values(2)
    # the calendar of the padded steps is the grid's, before the series' first point
    expected = calendar_features(
        pd.date_range(end="2024-01-01T01:00:00", periods=INPUT_SIZE, freq="h"), manifest.features
    )
    np.testing.assert_allclose(short.window.features[:INPUT_SIZE], expected, rtol=1e-6)
    assert short.future[0] == pd.Timestamp("2024-01-01T02:00:00")
    assert prepare(manifest, hourly_values(INPUT_SIZE), start="2024-01-01T00:00:00").padded == 0


@pytest.mark.parametrize("via", ["timestamps", "start"])
def test_null_values_are_gaps_and_infinities_are_refused_with_their_position(manifest: Manifest, via: str) -> None:
    grid = pd.date_range("2024-01-01", periods=8, freq="h")
    given = {"timestamps": iso(grid)} if via == "timestamps" else {"start": "2024-01-01T00:00:00"}
    values: list[float | None] = list(hourly_values(8))
    values[5] = None
    prepared = prepare(manifest, values, **given)
    assert prepared.missing == 1 and prepared.padded == 0 and np.isnan(prepared.window.history[3])
    for bad in (float("inf"), float("-inf")):
        values[3] = bad
        with pytest.raises(NonFiniteValues, match=r"2024-01-01 03:00:00 \(position 3\)") as refused:
            prepare(manifest, values, **given)
        assert refused.value.series_id == "a"


def test_too_little_signal_is_refused_with_the_fraction_missing(manifest: Manifest) -> None:
    values: list[float | None] = [None] * 40
    values[0], values[-1] = 1.0, 2.0
    with pytest.raises(BadTimestamps, match=r"too little signal: 38 of the 40 points .* missing \(95%; at most 90%"):
        prepare(manifest, values, start="2024-01-01T00:00:00")
    with pytest.raises(NonFiniteValues, match=f"no observed value in its last {INPUT_SIZE} points"):
        prepare(manifest, [*hourly_values(20), *[None] * 2 * INPUT_SIZE], start="2024-01-01T00:00:00")


def test_timestamps_left_out_of_the_grid_are_gaps(manifest: Manifest) -> None:
    hours = [0, 1, 3, 4, 5, 6, 7, 8]
    prepared = prepare(manifest, hourly_values(8), timestamps=[f"2024-01-01T{hour:02d}:00:00" for hour in hours])
    # the window is the last six hours, 03:00 to 08:00 ... and 02:00 is a gap only before it
    assert prepared.missing == 0 and prepared.future[0] == pd.Timestamp("2024-01-01T09:00:00")
    hours = [0, 1, 2, 3, 5, 6, 8, 9]
    prepared = prepare(manifest, hourly_values(8), timestamps=[f"2024-01-01T{hour:02d}:00:00" for hour in hours])
    assert prepared.missing == 2
    assert np.isnan(prepared.window.history).tolist() == [True, False, False, True, False, False]


@pytest.mark.parametrize(
    ("hours", "problem"),
    [
        ([0, 1, 1, 2, 3, 4, 5, 6], "duplicate timestamp 2024-01-01 01:00:00 at position 2"),
        ([0, 2, 1, 3, 4, 5, 6, 7], "unsorted timestamp 2024-01-01 01:00:00 at position 2"),
    ],
)
def test_irregular_timestamps_are_refused_at_the_first_bad_one(
    manifest: Manifest, hours: list[int], problem: str
) -> None:
    stamps = [f"2024-01-01T{hour:02d}:00:00" for hour in hours]
    with pytest.raises(BadTimestamps) as refused:
        prepare(manifest, hourly_values(8), timestamps=stamps)
    assert problem in str(refused.value)
    assert refused.value.series_id == "a"


def test_a_timestamp_off_the_grid_is_named(manifest: Manifest) -> None:
    stamps = [f"2024-01-01T{hour:02d}:00:00" for hour in range(7)] + ["2024-01-01T07:30:00"]
    with pytest.raises(BadTimestamps, match=r"2024-01-01 07:30:00 \(position 7\) is not on the 'h' grid"):
        prepare(manifest, hourly_values(8), timestamps=stamps)


def test_unparseable_timestamps_are_refused(manifest: Manifest) -> None:
    stamps = iso(pd.date_range("2024-01-01", periods=8, freq="h"))
    stamps[4] = "yesterday-ish"
    with pytest.raises(BadTimestamps, match="'yesterday-ish' at position 4"):
        prepare(manifest, hourly_values(8), timestamps=stamps)


def test_timestamps_and_values_must_be_as_many(manifest: Manifest) -> None:
    stamps = iso(pd.date_range("2024-01-01", periods=7, freq="h"))
    with pytest.raises(InvalidRequest, match="7 timestamps but 8 values"):
        prepare(manifest, hourly_values(8), timestamps=stamps)


def test_check_request_serves_the_model_horizon_by_default(manifest: Manifest) -> None:
    assert check_request(manifest, None, []) == HORIZON
    assert check_request(manifest, 1, [80.0]) == 1
    assert check_request(manifest, HORIZON, [50.0, 99.5]) == HORIZON


@pytest.mark.parametrize("horizon", [0, -1, HORIZON + 1])
def test_a_horizon_outside_the_model_is_refused(manifest: Manifest, horizon: int) -> None:
    with pytest.raises(InvalidRequest, match=f"horizon {horizon} is out of range.*'demo' forecasts 1 to {HORIZON}"):
        check_request(manifest, horizon, [])


@pytest.mark.parametrize("level", [0.0, 100.0, -5.0, 150.0, 99.9])
def test_levels_outside_the_calibrated_range_are_refused(manifest: Manifest, level: float) -> None:
    with pytest.raises(InvalidRequest, match=f"interval level {level:g}"):
        check_request(manifest, None, [80.0, level])
