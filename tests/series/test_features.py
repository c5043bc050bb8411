"""Calendar features: chosen by the frequency, sine/cosine pairs on the unit circle so that the end
of a cycle sits next to its start, and future timestamps that continue the series' grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast.series.features import FEATURE_NAMES, calendar_features, default_features, future_timestamps


@pytest.mark.parametrize(
    ("freq", "expected"),
    [
        ("15min", ["minute_of_hour", "hour_of_day", "day_of_week"]),
        ("h", ["hour_of_day", "day_of_week"]),
        ("6h", ["hour_of_day", "day_of_week"]),
        ("D", ["day_of_week", "day_of_year"]),
        ("7D", ["week_of_year"]),
        ("W-SUN", ["week_of_year"]),
        ("W-WED", ["week_of_year"]),
        ("MS", ["month_of_year"]),
        ("ME", ["month_of_year"]),
        ("YS", []),  # nothing cycles within a year of yearly data
    ],
)
def test_default_features_are_the_cycles_the_frequency_can_show(freq: str, expected: list[str]) -> None:
    assert default_features(freq) == expected


def test_calendar_features_are_sin_cos_pairs_on_the_unit_circle() -> None:
    stamps = pd.date_range("2024-01-01", periods=24 * 400, freq="h")  # more than a leap year
    names = list(FEATURE_NAMES)
    features = calendar_features(stamps, names)

    assert features.shape == (len(stamps), 2 * len(names))
    assert features.dtype == np.float32
    assert np.all(np.abs(features) <= 1.0)
    radius = features[:, 0::2] ** 2 + features[:, 1::2] ** 2  # (T, len(names))
    np.testing.assert_allclose(radius, 1.0, atol=1e-6)


def test_calendar_features_follow_the_order_of_the_names() -> None:
    stamps = pd.date_range("2024-03-05 07:00", periods=30, freq="h")
    both = calendar_features(stamps, ["hour_of_day", "day_of_week"])
    swapped = calendar_features(stamps, ["day_of_week", "hour_of_day"])
    np.testing.assert_array_equal(both[:, :2], swapped[:, 2:])
    np.testing.assert_array_equal(both[:, 2:], swapped[:, :2])


def test_no_feature_names_give_an_empty_column_block() -> None:
    stamps = pd.date_range("2024-01-01", periods=5, freq="YS")
    features = calendar_features(stamps, [])
    assert features.shape == (5, 0)
    assert features.dtype == np.float32


def _distance(features: np.ndarray, left: int, right: int) -> float:
    return float(np.linalg.norm(features[left] - features[right]))


@pytest.mark.parametrize(
    ("name", "freq", "period"),
    [("hour_of_day", "h", 24), ("day_of_week", "D", 7), ("month_of_year", "MS", 12), ("minute_of_hour", "min", 60)],
)
def test_the_end_of_a_cycle_sits_next_to_its_start(name: str, freq: str, period: int) -> None:
    # 2024-01-01 is a Monday at midnight: position 0 of every cycle above.
    stamps = pd.date_range("2024-01-01", periods=period + 1, freq=freq)
    features = calendar_features(stamps, [name])
    last, wrapped = period - 1, period  # e.g. hour 23 and the next day's hour 0
    one_step = _distance(features, 0, 1)
    assert _distance(features, last, wrapped) == pytest.approx(one_step, rel=1e-5)
    assert _distance(features, last, wrapped) < _distance(features, 0, period // 2)  # nearer than the far side
    np.testing.assert_allclose(features[wrapped], features[0], atol=1e-6)  # one whole cycle later


def test_hour_of_day_reads_the_hour_not_the_position() -> None:
    stamps = pd.DatetimeIndex(["2024-01-01 06:00", "2024-07-15 06:00", "2024-01-01 18:00"])
    features = calendar_features(stamps, ["hour_of_day"])
    np.testing.assert_array_equal(features[0], features[1])  # same hour, different days
    np.testing.assert_allclose(features[0], [1.0, 0.0], atol=1e-6)  # 6h: a quarter of the cycle
    np.testing.assert_allclose(features[2], [-1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    ("start", "freq"),
    [("2024-01-01 00:00", "h"), ("2024-01-01 00:00", "15min"), ("2024-01-07", "W-SUN"), ("2023-11-01", "MS")],
)
def test_future_timestamps_continue_the_grid(start: str, freq: str) -> None:
    history, horizon = 10, 5
    grid = pd.date_range(start, periods=history + horizon, freq=freq)
    future = future_timestamps(grid[history - 1], freq, horizon)
    assert list(future) == list(grid[history:])


def test_future_timestamps_of_month_ends_follow_the_calendar() -> None:
    future = future_timestamps(pd.Timestamp("2024-01-31"), "ME", 3)
    assert list(future) == [pd.Timestamp("2024-02-29"), pd.Timestamp("2024-03-31"), pd.Timestamp("2024-04-30")]
