"""Prediction intervals: split-conformal calibration covers fresh data at the nominal rate, the
calibrated quantile is the right order statistic, levels outside the calibrated range are refused,
and levels between calibrated ones interpolate monotonically."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecast.errors import InvalidRequest
from forecast.model.intervals import (
    CALIBRATED_LEVELS,
    Calibration,
    calibrate,
    check_levels,
    conformity_scores,
    empirical_coverage,
    interval_bounds,
    score_quantile,
)

STEP_NOISE = np.array([0.5, 1.0, 3.0])  # (H,) the error grows with the horizon step


def _windows(rng: np.random.Generator, n_windows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exchangeable windows: forecast, actual and spread (W,) with scale-free errors."""
    spread = rng.uniform(0.1, 10.0, size=n_windows)  # series of very different magnitudes
    forecast = rng.normal(size=(n_windows, len(STEP_NOISE))) * spread[:, None]
    errors = rng.standard_t(df=5, size=forecast.shape) * STEP_NOISE * spread[:, None]
    return forecast, forecast + errors, spread


@pytest.mark.parametrize("level", [80.0, 90.0, 95.0])
def test_coverage_on_fresh_data_is_at_least_nominal_at_every_step(level: float) -> None:
    rng = np.random.default_rng(0)
    n_calibration, repeats = 99, 200
    covered = []
    for _ in range(repeats):  # the guarantee is on average over calibration sets
        forecast, actual, spread = _windows(rng, n_calibration)
        calibration = calibrate(conformity_scores(actual, forecast, spread))
        fresh_forecast, fresh_actual, fresh_spread = _windows(rng, 400)
        lower, upper = interval_bounds(fresh_forecast, fresh_spread, calibration, level)
        covered.append(((fresh_actual >= lower) & (fresh_actual <= upper)).mean(axis=0))  # (H,)
    coverage = np.mean(covered, axis=0)
    nominal = level / 100.0
    assert np.all(coverage >= nominal - 0.015), coverage  # ~5 standard errors
    # ... and not wastefully wide: split conformal stays below nominal + 1/(n + 1).
    assert np.all(coverage <= nominal + 1.0 / (n_calibration + 1) + 0.015), coverage


def test_empirical_coverage_reports_each_level_near_nominal() -> None:
    rng = np.random.default_rng(1)
    forecast, actual, spread = _windows(rng, 2000)
    calibration = calibrate(conformity_scores(actual, forecast, spread))
    fresh_forecast, fresh_actual, fresh_spread = _windows(rng, 4000)
    coverage = empirical_coverage(fresh_actual, fresh_forecast, fresh_spread, calibration)
    assert set(coverage) == {"50", "80", "90", "95"}
    for level, value in coverage.items():
        assert value == pytest.approx(float(level) / 100.0, abs=0.02)


def test_the_calibrated_quantile_is_the_finite_sample_order_statistic() -> None:
    """With n scores, level a uses the ceil((n + 1) * a)-th smallest score, no larger."""
    scores = np.arange(1.0, 11.0)[:, None]  # n = 10, one step: the k-th smallest score is k
    calibration = calibrate(scores)
    for level, expected in [(50.0, 6.0), (80.0, 9.0), (90.0, 10.0), (95.0, 10.0), (10.0, 2.0)]:
        row = calibration.levels.index(level)
        assert calibration.quantiles[row] == [expected], level
    assert calibration.n_windows == 10


def test_calibration_round_trips_through_json() -> None:
    calibration = calibrate(np.random.default_rng(2).exponential(size=(50, 4)))
    restored = Calibration.model_validate_json(calibration.model_dump_json())
    assert restored == calibration
    np.testing.assert_array_equal(score_quantile(restored, 87.5, 4), score_quantile(calibration, 87.5, 4))


@pytest.fixture
def calibration() -> Calibration:
    return calibrate(np.random.default_rng(3).exponential(size=(300, 5)) * np.arange(1, 6))


@pytest.mark.parametrize("level", [0.0, 100.0, -5.0, 99.9, 150.0, math.nan])
def test_levels_outside_the_calibrated_range_are_refused(calibration: Calibration, level: float) -> None:
    with pytest.raises(InvalidRequest, match="level"):
        check_levels([80.0, level], calibration)


def test_levels_inside_the_calibrated_range_are_accepted(calibration: Calibration) -> None:
    check_levels([0.5, 50.0, 80.0, 87.3, 95.0, CALIBRATED_LEVELS[-1]], calibration)


def test_a_level_above_a_smaller_calibration_is_refused() -> None:
    calibration = Calibration(levels=[50.0, 80.0, 90.0], quantiles=[[1.0], [2.0], [3.0]], n_windows=10)
    check_levels([90.0], calibration)
    with pytest.raises(InvalidRequest, match="highest calibrated level 90"):
        check_levels([95.0], calibration)


def test_interpolation_between_calibrated_levels_is_monotone(calibration: Calibration) -> None:
    grid = np.linspace(0.0, CALIBRATED_LEVELS[-1], 1001)
    table = np.array([score_quantile(calibration, float(level), 5) for level in grid])  # (levels, H)
    assert np.all(np.diff(table, axis=0) >= 0)
    assert np.all(table[0] == 0)
    # Exactly the stored quantile at a calibrated level, the linear mix halfway between two.
    q80, q81 = score_quantile(calibration, 80.0, 5), score_quantile(calibration, 81.0, 5)
    np.testing.assert_allclose(q80, calibration.quantiles[calibration.levels.index(80.0)][:5])
    np.testing.assert_allclose(score_quantile(calibration, 80.5, 5), (q80 + q81) / 2)
    # Wider with the horizon here, because the scores grow with the step.
    assert np.all(np.diff(score_quantile(calibration, 90.0, 5)) > 0)


def test_interval_bounds_are_symmetric_and_scale_with_each_window(calibration: Calibration) -> None:
    forecast = np.array([[10.0, 11.0, 12.0], [-3.0, -3.0, -3.0]])
    spread = np.array([1.0, 4.0])
    lower, upper = interval_bounds(forecast, spread, calibration, 90.0)
    width = score_quantile(calibration, 90.0, 3)
    np.testing.assert_allclose(upper - forecast, forecast - lower)
    np.testing.assert_allclose(upper[0] - forecast[0], width)
    np.testing.assert_allclose(upper[1] - forecast[1], 4.0 * width)
    narrower, _ = interval_bounds(forecast, spread, calibration, 80.0)
    assert np.all(narrower >= lower)
