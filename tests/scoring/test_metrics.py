"""Accuracy metrics on hand-computed examples: M4's sMAPE (percent) and MASE (scaled by the
training part's seasonal difference), and the seasonal periods chosen from the frequency."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forecast.scoring.metrics import forecast_metrics, mase_denominator
from forecast.series.dataset import Dataset, Series
from forecast.series.frequency import cadence
from forecast.series.windows import build_store, split_blocks
from forecast.training.evaluate import mase_denominators
from tests.factories import METRIC_NAMES


def test_metrics_on_a_hand_computed_example() -> None:
    actual = np.array([[1.0, 2.0], [4.0, 0.0]])
    forecast = np.array([[2.0, 2.0], [3.0, 0.0]])
    scales = np.array([2.0, 0.5])
    metrics = forecast_metrics(actual, forecast, scales)
    assert set(metrics) == set(METRIC_NAMES)
    assert metrics["mae"] == pytest.approx(0.5)  # |errors| 1, 0, 1, 0
    assert metrics["mse"] == pytest.approx(0.5)
    assert metrics["rmse"] == pytest.approx(math.sqrt(0.5))
    # sMAPE = 100 * mean(2|y - f| / (|y| + |f|)): 2/3, 0, 2/7 and 0 for the exact 0-for-0 forecast
    assert metrics["smape"] == pytest.approx(100.0 * (2 / 3 + 2 / 7) / 4)
    # MASE = mean(|y - f| / scale of the window's series): 1/2, 0, 1/0.5, 0
    assert metrics["mase"] == pytest.approx((0.5 + 2.0) / 4)


def test_smape_is_in_percent_and_bounded_by_200() -> None:
    actual = np.array([[1.0, 5.0, 3.0]])
    assert forecast_metrics(actual, actual.copy(), np.ones(1))["smape"] == 0.0
    opposite = forecast_metrics(actual, -actual, np.ones(1))
    assert opposite["smape"] == pytest.approx(200.0)
    assert forecast_metrics(actual, np.zeros_like(actual), np.ones(1))["smape"] == pytest.approx(200.0)


def test_mase_ignores_series_whose_scale_is_zero() -> None:
    actual = np.array([[1.0, 1.0], [5.0, 5.0]])
    forecast = np.array([[2.0, 3.0], [6.0, 6.0]])
    metrics = forecast_metrics(actual, forecast, np.array([2.0, 0.0]))
    assert metrics["mase"] == pytest.approx((0.5 + 1.0) / 2)  # only the first window counts
    undefined = forecast_metrics(actual, forecast, np.full(2, np.nan))
    assert undefined["mase"] is None  # no series has a scale: undefined, stored as null, never NaN
    assert undefined["mae"] is not None and np.isfinite(undefined["mae"])


def test_mase_scale_is_the_mean_absolute_seasonal_difference() -> None:
    history = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    assert mase_denominator(history, 1) == pytest.approx(np.mean([1, 2, 3, 4]))
    assert mase_denominator(history, 2) == pytest.approx(np.mean([3, 5, 7]))  # 4-1, 7-2, 11-4
    assert mase_denominator(history, 5) == pytest.approx(2.5)  # no full season: first differences
    assert math.isnan(mase_denominator(np.array([3.0]), 1))


def test_a_perfectly_periodic_history_is_scaled_by_its_steps_and_a_constant_one_has_no_scale() -> None:
    day = np.array([0.0, 1.0, 3.0, 1.0])
    periodic = np.tile(day, 5)  # seasonal differences all zero
    assert mase_denominator(periodic, 4) == pytest.approx(np.mean(np.abs(np.diff(periodic))))
    assert mase_denominator(periodic + 1e-9 * np.arange(20), 4) == pytest.approx(np.mean(np.abs(np.diff(periodic))))
    assert math.isnan(mase_denominator(np.full(20, 7.0), 4))


def test_the_validation_mase_denominator_comes_from_each_series_training_part_only() -> None:
    train_a, train_b = np.array([0.0, 1.0, 3.0, 6.0, 10.0, 15.0]), np.array([5.0, 5.0, 7.0, 7.0, 9.0, 9.0])
    held_out = np.array([1e3, -1e3, 1e3, -1e3])  # validation 2 + test 2: wild, must not count
    stamps = pd.date_range("2024-01-01", periods=10, freq="D")
    dataset = Dataset(
        series=[
            Series("a", stamps, np.concatenate([train_a, held_out])),
            Series("b", stamps, np.concatenate([train_b, held_out])),
        ],
        freq="D",
        source="test",
    )
    store = build_store(dataset, [])
    blocks = split_blocks(store, input_size=2, horizon=2, val_size=2, test_size=2)
    scales = mase_denominators(store, blocks, period=2)
    np.testing.assert_allclose(scales["validation"], [np.mean([3, 5, 7, 9]), np.mean([2, 2, 2, 2])])


@pytest.mark.parametrize(
    ("freq", "season", "period"),
    [
        ("h", 24, 24),
        ("30min", 48, 1),
        ("D", 7, 1),
        ("B", 5, 1),
        ("W", 52, 1),
        ("W-MON", 52, 1),
        ("MS", 12, 12),
        ("ME", 12, 12),
        ("QS", 4, 4),
        ("YS", 1, 1),
    ],
)
def test_season_length_and_mase_period_follow_the_frequency(freq: str, season: int, period: int) -> None:
    assert cadence(freq).season_length == season
    assert cadence(freq).mase_period == period
