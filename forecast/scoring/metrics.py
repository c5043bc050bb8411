"""Forecast accuracy metrics (M4 definitions), averaged over every window and horizon step."""

from __future__ import annotations

import numpy as np


def mase_denominator(history: np.ndarray, period: int) -> float:
    """Mean absolute seasonal difference of the in-sample (training) values.

    A perfectly periodic history has a seasonal scale of zero, or of float32 rounding noise,
    which would make every error (near) infinitely large: it falls back to the step-to-step
    (lag 1) scale, which still measures how much the series moves. A constant history has no
    scale at all: NaN, and the series is left out of MASE (`forecast_metrics`)."""
    observed = history[np.isfinite(history)]
    rounding_noise = 1e-6 * float(np.mean(np.abs(observed))) if len(observed) else 0.0
    for lag in dict.fromkeys((period, 1)):
        if len(history) > lag:
            differences = np.abs(history[lag:] - history[:-lag])
            differences = differences[np.isfinite(differences)]  # pairs with a gap are left out
            if len(differences) == 0:
                continue
            denominator = float(np.mean(differences))
            if denominator > rounding_noise:
                return denominator
    return float("nan")


def denominators_before(values: np.ndarray, offsets: np.ndarray, ends: np.ndarray, period: int) -> np.ndarray:
    """(S,) the MASE denominator of each series laid end to end in `values` (offsets (S + 1,)),
    from its points before `ends` (S,), counted from the series' start."""
    return np.array(
        [
            mase_denominator(values[start : start + int(end)], period)
            for start, end in zip(offsets[:-1], ends, strict=True)
        ]
    )


def forecast_metrics(actual: np.ndarray, forecast: np.ndarray, denominators: np.ndarray) -> dict[str, float | None]:
    """actual, forecast (W, H), actual NaN where it is missing (left out of every metric);
    denominators (W,) the MASE denominator of each window's series. MASE is None (undefined) when
    no series has a scale: every history was constant."""
    observed = np.isfinite(actual)
    if not observed.all():
        return _observed_metrics(actual, forecast, denominators, observed)
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


def _observed_metrics(
    actual: np.ndarray, forecast: np.ndarray, denominators: np.ndarray, observed: np.ndarray
) -> dict[str, float | None]:
    """The metrics over the observed actuals only: each the mean of its terms where observed."""
    rows = np.broadcast_to(np.where(denominators > 0, denominators, np.nan)[:, None], actual.shape)
    actual, forecast, scales = actual[observed], forecast[observed], rows[observed]  # (n,)
    if len(actual) == 0:
        return {"mae": None, "mse": None, "rmse": None, "smape": None, "mase": None}
    return forecast_metrics(actual[:, None], forecast[:, None], scales)
