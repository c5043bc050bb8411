"""The one preprocessing path from raw windows to network inputs and back.

The training job, its evaluation and the API all call `encode` and `decode`; nothing else
scales values or builds the network's input, so training and serving cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from forecast.model.config import ScalingParams
from forecast.model.scaling import from_scaled, to_scaled, window_stats

_WINDOW = ScalingParams(mode="window")


@dataclass(slots=True)
class Encoded:
    inputs: torch.Tensor  # (B, L, input_channels(F)) scaled values then calendar features
    loc: torch.Tensor  # (B, 1)
    spread: torch.Tensor  # (B, 1) the scaling's scale
    # (B, 1) the window's own scale, whatever the scaling: conformal intervals calibrated in it
    # follow each window's volatility, also under global scaling (where `spread` is one constant).
    window_spread: torch.Tensor


def encode(history: torch.Tensor, features: torch.Tensor, params: ScalingParams) -> Encoded:
    """history (B, L) raw values, features (B, L, F) -> network inputs and the window's scale.

    The statistics and the scaling run in history's dtype and only the scaled values take the
    network's (features') dtype: served windows arrive as float64, so a level of 1e8 keeps
    steps that float32 (spacing 8 at 1e8) would round away."""
    loc, spread = window_stats(history, params)
    scaled = to_scaled(history, loc, spread).to(features.dtype)  # (B, L)
    inputs = torch.cat([scaled.unsqueeze(-1), features], dim=-1)  # (B, L, 1 + F)
    window_spread = spread if params.mode == "window" else window_stats(history, _WINDOW)[1]
    return Encoded(inputs=inputs, loc=loc, spread=spread, window_spread=window_spread)


def decode(forecast_scaled: torch.Tensor, encoded: Encoded) -> torch.Tensor:
    """(B, H) scaled forecasts -> (B, H) on the data's original scale, in the history's dtype."""
    return from_scaled(forecast_scaled.to(encoded.loc.dtype), encoded.loc, encoded.spread)
