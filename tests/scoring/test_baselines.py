"""The baselines on a known sequence: naive repeats the last value, seasonal naive the last
season, falling back to naive when a window has less than one season of its own history."""

from __future__ import annotations

import numpy as np
import pytest

from forecast.scoring.baselines import History, filled_history, naive, seasonal_naive


@pytest.fixture
def values() -> History:
    """Two series end to end: a = 10..17 at [0, 8), b = 100..107 at [8, 16)."""
    return History.complete(np.concatenate([np.arange(10.0, 18.0), np.arange(100.0, 108.0)]))


STARTS = np.array([0, 8])


def test_naive_repeats_the_value_before_the_origin(values: History) -> None:
    forecast = naive(values, np.array([5, 8 + 3]), horizon=3)
    np.testing.assert_array_equal(forecast, [[14, 14, 14], [102, 102, 102]])


def test_seasonal_naive_repeats_the_last_season(values: History) -> None:
    origins = np.array([6, 8 + 3])
    forecast = seasonal_naive(values, origins, horizon=5, season=3, series_starts=STARTS[[0, 1]])
    # a at position 6: the season before is values[3:6] = 13, 14, 15, then it repeats
    np.testing.assert_array_equal(forecast[0], [13, 14, 15, 13, 14])
    # b at position 3: exactly one season of history, b's own 100, 101, 102
    np.testing.assert_array_equal(forecast[1], [100, 101, 102, 100, 101])


def test_seasonal_naive_falls_back_to_naive_without_a_full_season(values: History) -> None:
    # b at position 2 has two points of history, less than a season of 3: naive (101), never
    # values from series a before it.
    forecast = seasonal_naive(values, np.array([8 + 2]), horizon=4, season=3, series_starts=STARTS[[1]])
    np.testing.assert_array_equal(forecast, [[101, 101, 101, 101]])


def test_seasonal_naive_with_season_one_is_naive(values: History) -> None:
    origins = np.array([3, 7, 9, 15])
    series_starts = np.array([0, 0, 8, 8])
    np.testing.assert_array_equal(
        seasonal_naive(values, origins, horizon=4, season=1, series_starts=series_starts),
        naive(values, origins, horizon=4),
    )


def test_seasonal_naive_is_exact_on_a_periodic_series() -> None:
    pattern = np.array([3.0, -1.0, 4.0, 1.0, -5.0, 9.0])
    values = np.tile(pattern, 5)  # one series of 30 points, season 6
    origins = np.arange(6, 30 - 8 + 1)
    history = History.complete(values)
    forecast = seasonal_naive(history, origins, horizon=8, season=6, series_starts=np.zeros_like(origins))
    actual = values[origins[:, None] + np.arange(8)]
    np.testing.assert_array_equal(forecast, actual)


def test_a_gap_still_open_at_the_origin_is_carried_forward_not_interpolated() -> None:
    """The baselines see no value past their origin: inside a gap that closes later, the value
    before it carries forward (as the model's window is filled); once closed, the line."""
    values = np.array([1.0, 2.0, 3.0, 10.0, np.nan, np.nan, np.nan, np.nan, 20.0, 21.0, 22.0, 23.0])
    history, _ = filled_history(values, np.array([0, len(values)]))
    assert naive(history, np.array([6]), horizon=2).tolist() == [[10.0, 10.0]]
    assert naive(history, np.array([10]), horizon=1).tolist() == [[21.0]]
    seasonal = seasonal_naive(history, np.array([7, 10]), horizon=4, season=4, series_starts=np.array([0, 0]))
    assert seasonal[0].tolist() == [10.0, 10.0, 10.0, 10.0]  # positions 3..6 from origin 7: gap open
    assert seasonal[1].tolist() == [16.0, 18.0, 20.0, 21.0]  # positions 6..9 from origin 10: closed, the line
