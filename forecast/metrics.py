"""Forecast accuracy metrics (M4 definitions), averaged over every window and horizon step."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecast.data import fixed_step_ns

METRIC_NAMES = ("mae", "mse", "rmse", "smape", "mase")


def season_length(freq: str) -> int:
    """Observations per natural cycle, used by the seasonal-naive baseline."""
    offset = to_offset(freq)
    name = offset.name.upper()
    step_ns = fixed_step_ns(freq)
    if step_ns is not None:
        step = pd.Timedelta(step_ns, unit="ns")
        if step < pd.Timedelta(days=1):
            return max(1, int(pd.Timedelta(days=1) / step))  # one day: 24 for hourly data
        if step == pd.Timedelta(days=1):
            return 7
        if step == pd.Timedelta(days=7):
            return 52
        return 1
    if name in {"B", "C"}:  # business days are calendar offsets (no fixed nanos): a 5-day week
        return 5
    if name.startswith("W"):
        return 52
    if name.startswith(("Q", "BQ")):
        return 4
    if name.startswith(("M", "BM", "SM", "CBM")):
        return 12
    return 1


def mase_period(freq: str) -> int:
    """The seasonal difference in MASE's denominator, as the M4 competition defines it:
    24 for hourly, 12 monthly, 4 quarterly, and 1 for daily, weekly and yearly data."""
    length = season_length(freq)
    return length if length in {4, 12, 24} else 1


def mase_scale(history: np.ndarray, period: int) -> float:
    """Mean absolute seasonal difference of the in-sample (training) values.

    A perfectly periodic history has a seasonal scale of zero, or of float32 rounding noise,
    which would make every error (near) infinitely large: it falls back to the step-to-step
    (lag 1) scale, which still measures how much the series moves. A constant history has no
    scale at all: NaN, and the series is left out of MASE (`forecast_metrics`)."""
    rounding_noise = 1e-6 * float(np.mean(np.abs(history))) if len(history) else 0.0
    for lag in dict.fromkeys((period, 1)):
        if len(history) > lag:
            scale = float(np.mean(np.abs(history[lag:] - history[:-lag])))
            if scale > rounding_noise:
                return scale
    return float("nan")


def forecast_metrics(actual: np.ndarray, forecast: np.ndarray, scales: np.ndarray) -> dict[str, float | None]:
    """actual, forecast (W, H); scales (W,) the MASE denominator of each window's series.
    MASE is None (undefined) when no series has a scale: every history was constant."""
    error = forecast - actual  # (W, H)
    absolute = np.abs(error)
    denominator = np.abs(actual) + np.abs(forecast)
    smape_terms = np.divide(2.0 * absolute, denominator, out=np.zeros_like(absolute), where=denominator > 0)
    safe_scales = np.where(scales > 0, scales, np.nan)[:, None]  # (W, 1)
    mse = float(np.mean(error**2))
    return {
        "mae": float(np.mean(absolute)),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "smape": float(100.0 * np.mean(smape_terms)),
        "mase": float(np.nanmean(absolute / safe_scales)) if np.isfinite(safe_scales).any() else None,
    }
