"""Prediction intervals by split-conformal calibration, per horizon step.

Scores are absolute errors divided by each window's own scale (its standard deviation around
its last value), so one calibration serves series of any magnitude and intervals widen with a
window's volatility, whatever the network's scaling. The manifest keeps, for every calibrated level, the score quantile per step;
a request's level between two calibrated ones is interpolated.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, PrivateAttr

from forecast.errors import InvalidRequest

IntervalScale = Literal["scaling", "window"]
CALIBRATED_LEVELS: tuple[float, ...] = (*tuple(float(level) for level in range(1, 100)), 99.5)
REPORTED_LEVELS: tuple[float, ...] = (50.0, 80.0, 90.0, 95.0)


class Calibration(BaseModel):
    levels: list[float]
    quantiles: list[list[float]]  # (n_levels, H) score quantile per level and horizon step
    n_windows: int
    coverage: dict[str, float] = {}  # level -> empirical coverage on the test block
    # The scale the scores are in: each window's own (`window`), or the scaling's, as versions
    # written before intervals always used the window's (identical under window scaling).
    scale: IntervalScale = "scaling"
    _table: tuple[np.ndarray, np.ndarray] | None = PrivateAttr(default=None)

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(levels with 0 prepended, quantiles with a zero row prepended) as arrays, built once:
        every served request with intervals reads it."""
        if self._table is None:
            quantiles = np.asarray(self.quantiles, dtype=np.float64)
            self._table = (
                np.concatenate([[0.0], self.levels]),
                np.vstack([np.zeros((1, quantiles.shape[1])), quantiles]),
            )
        return self._table


def conformity_scores(actual: np.ndarray, forecast: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(W, H) absolute errors in units of each window's scale; spread is (W,) or (W, 1)."""
    return np.abs(actual - forecast) / np.reshape(spread, (-1, 1))


def calibrate(scores: np.ndarray) -> Calibration:
    """Split-conformal quantiles with the finite-sample correction: the k-th smallest score,
    k = ceil((n + 1) * level), per horizon step (np.quantile at k / n with method="higher" would
    take the (k + 1)-th, one rank too wide). A score is NaN where the actual is missing: each step
    ranks its observed scores (n per step); a step with none takes the widest step's quantile."""
    n_windows = scores.shape[0]
    ordered = np.sort(scores, axis=0)  # (n, H), NaN last
    counts = np.isfinite(scores).sum(axis=0)  # (H,)
    steps = np.arange(scores.shape[1])
    rows = []
    for level in CALIBRATED_LEVELS:
        ranks = np.minimum(counts, np.ceil((counts + 1) * level / 100.0).astype(np.int64))  # 1-based
        row = ordered[np.maximum(ranks - 1, 0), steps]
        if not np.isfinite(row).all():
            row = np.where(np.isfinite(row), row, np.nanmax(row) if np.isfinite(row).any() else 0.0)
        rows.append([round(float(q), 6) for q in row])
    return Calibration(levels=list(CALIBRATED_LEVELS), quantiles=rows, n_windows=n_windows, scale="window")


def check_levels(levels: list[float], calibration: Calibration) -> None:
    highest = calibration.levels[-1]
    for level in levels:
        if not 0.0 < level < 100.0:
            raise InvalidRequest(f"interval level {level} must lie strictly between 0 and 100 (percent)")
        if level > highest:
            raise InvalidRequest(f"interval level {level} is above the highest calibrated level {highest}")


def score_quantile(calibration: Calibration, level: float, horizon: int) -> np.ndarray:
    """(H,) score quantile for one level, interpolated between calibrated levels (0 at level 0)."""
    grid, table = calibration.table()
    upper = int(np.clip(np.searchsorted(grid, level), 1, len(grid) - 1))
    weight = (level - grid[upper - 1]) / (grid[upper] - grid[upper - 1])
    row: np.ndarray = table[upper - 1, :horizon] * (1.0 - weight) + table[upper, :horizon] * weight
    return row


def interval_bounds(
    forecast: np.ndarray, spread: np.ndarray, calibration: Calibration, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """forecast (W, H), spread (W,) -> lower and upper (W, H)."""
    width = score_quantile(calibration, level, forecast.shape[1])[None, :] * np.reshape(spread, (-1, 1))
    return forecast - width, forecast + width


def empirical_coverage(
    actual: np.ndarray, forecast: np.ndarray, spread: np.ndarray, calibration: Calibration
) -> dict[str, float]:
    coverage = {}
    for level in REPORTED_LEVELS:
        lower, upper = interval_bounds(forecast, spread, calibration, level)
        covered = (actual >= lower) & (actual <= upper)
        observed = np.isfinite(actual)  # a missing actual is neither covered nor missed
        coverage[f"{level:g}"] = float(covered[observed].mean()) if observed.any() else 0.0
    return coverage
