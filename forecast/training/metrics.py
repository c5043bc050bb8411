"""Forecast accuracy metrics (M4 definitions), averaged over every window and horizon step."""

from __future__ import annotations

import numpy as np


def mase_denominator(history: np.ndarray, period: int) -> float:
    """Mean absolute seasonal difference of the in-sample (training) values.

    A perfectly periodic history has a seasonal scale of zero, or of float32 rounding noise,
    which would make every error (near) infinitely large: it falls back to the step-to-step
    (lag 1) scale, which still measures how much the series moves. A constant history has no
    scale at all: NaN, and the series is left out of MASE (`forecast_metrics`)."""
    rounding_noise = 1e-6 * float(np.mean(np.abs(history))) if len(history) else 0.0
    for lag in dict.fromkeys((period, 1)):
        if len(history) > lag:
            denominator = float(np.mean(np.abs(history[lag:] - history[:-lag])))
            if denominator > rounding_noise:
                return denominator
    return float("nan")


def forecast_metrics(actual: np.ndarray, forecast: np.ndarray, denominators: np.ndarray) -> dict[str, float | None]:
    """actual, forecast (W, H); denominators (W,) the MASE denominator of each window's series.
    MASE is None (undefined) when no series has a scale: every history was constant."""
    error = forecast - actual  # (W, H)
    absolute = np.abs(error)
    denominator = np.abs(actual) + np.abs(forecast)
    smape_terms = np.divide(2.0 * absolute, denominator, out=np.zeros_like(absolute), where=denominator > 0)
    safe_denominators = np.where(denominators > 0, denominators, np.nan)[:, None]  # (W, 1)
    mse = float(np.mean(error**2))
    return {
        "mae": float(np.mean(absolute)),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "smape": float(100.0 * np.mean(smape_terms)),
        "mase": float(np.nanmean(absolute / safe_denominators)) if np.isfinite(safe_denominators).any() else None,
    }
