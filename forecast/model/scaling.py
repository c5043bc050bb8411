"""Scaling of input windows and inverse scaling of forecasts, in one affine form.

Both modes end as `scaled = (x - loc) / scale` per window:
- `window`: loc is the window's last value and scale its standard deviation, so series never
  seen in training are served as well as the ones that were; nothing is fitted.
- `global`: a scikit-learn StandardScaler, MinMaxScaler or RobustScaler fitted on the training
  part only; its fitted attributes are stored as JSON and the affine loc/scale derived from them.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from forecast.model.config import GlobalScaler, ScalingMode, ScalingParams

# A window whose values barely move would be divided by ~0; the floor keeps its scaled values
# small instead. Relative to the window's magnitude so it is unit-free.
_RELATIVE_FLOOR = 1e-4
_ABSOLUTE_FLOOR = 1e-8


def fit_scaling(mode: ScalingMode, scaler: GlobalScaler, training_values: np.ndarray) -> ScalingParams:
    """Fit on the training part only (the caller passes nothing else)."""
    if mode == "window":
        return ScalingParams(mode="window")
    column = np.asarray(training_values, dtype=np.float64)
    column = column[np.isfinite(column)].reshape(-1, 1)  # gaps and padding are not data
    if scaler == "standard":
        fitted_std = StandardScaler().fit(column)
        attributes = {"mean_": float(fitted_std.mean_[0]), "scale_": float(fitted_std.scale_[0])}
        loc, scale = attributes["mean_"], attributes["scale_"]
    elif scaler == "minmax":
        fitted_mm = MinMaxScaler().fit(column)
        # sklearn: x * scale_ + min_  ==  (x - (-min_ / scale_)) / (1 / scale_)
        attributes = {"scale_": float(fitted_mm.scale_[0]), "min_": float(fitted_mm.min_[0])}
        loc, scale = -attributes["min_"] / attributes["scale_"], 1.0 / attributes["scale_"]
    else:
        fitted_rb = RobustScaler().fit(column)
        attributes = {"center_": float(fitted_rb.center_[0]), "scale_": float(fitted_rb.scale_[0])}
        loc, scale = attributes["center_"], attributes["scale_"]
    return ScalingParams(mode="global", scaler=scaler, fitted=attributes, loc=loc, scale=scale if scale > 0 else 1.0)


def window_stats(
    history: torch.Tensor, params: ScalingParams, observed: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """loc and scale per window, each (B, 1), from the raw input windows (B, L) with their gaps
    filled (`forecast.model.missing`); `observed` (B, L) marks the points the statistics may
    read (None: all of them), so a filled value never moves the scale."""
    if params.mode == "global":
        batch = history.shape[0]
        loc = torch.full((batch, 1), params.loc, dtype=history.dtype, device=history.device)
        return loc, torch.full_like(loc, params.scale)
    loc = history[:, -1:]  # (B, 1): the last observed value, carried forward over a trailing gap
    if observed is None:
        spread = history.std(dim=1, unbiased=False, keepdim=True)  # (B, 1)
        floor = history.abs().mean(dim=1, keepdim=True) * _RELATIVE_FLOOR + _ABSOLUTE_FLOOR
        return loc, torch.maximum(spread, floor)
    weight = observed.to(history.dtype)
    count = weight.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
    mean = (history * weight).sum(dim=1, keepdim=True) / count
    spread = (((history - mean) * weight).square().sum(dim=1, keepdim=True) / count).sqrt()
    floor = (history.abs() * weight).sum(dim=1, keepdim=True) / count * _RELATIVE_FLOOR + _ABSOLUTE_FLOOR
    return loc, torch.maximum(spread, floor)


def to_scaled(values: torch.Tensor, loc: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    return (values - loc) / spread


def from_scaled(values: torch.Tensor, loc: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    return values * spread + loc
