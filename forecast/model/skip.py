"""The linear skip beside the recurrent network: the anchor plus an ARX model of the window.

The skip maps the window, less its last value, to each step's correction of the anchor (as in
LSTNet's highway and NLinear), and with covariates it reads each past covariate's window and the
static covariates (one-hot: an unseen category adds nothing). For a network that reads the
horizon's future-known inputs, each step also has linear weights of its own on step h's inputs
(the calendar and the future-known covariates) and on theirs at the window step whose value the
anchor repeats for step h, so the skip can take out the effect of the covariates' change since
then. The training job solves all of it in closed form before the epochs
(`forecast.training.linear`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from forecast.model.anchors import Anchor
from forecast.model.config import InputLayout


class HorizonLinear(nn.Module):
    """The skip's part over the horizon: step h adds its own linear weights times its step inputs
    (`step_design`: step h's future-known inputs, and theirs at the window's step the anchor
    repeats for step h), a regression on the covariates with coefficients of each step's own."""

    def __init__(self, horizon: int, known_width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(horizon, 2 * known_width))  # (H, 2W)

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        """steps (B, H, 2W) -> (B, H)."""
        return (steps * self.weight).sum(dim=-1)


def step_design(
    layout: InputLayout, inputs: torch.Tensor, known: torch.Tensor, anchor_source: torch.Tensor
) -> torch.Tensor:
    """The skip's inputs of each step (B, H, 2W): step h's future-known inputs, then the same
    inputs at the window position whose value the anchor repeats for step h. The anchor carries
    that step's covariate effects into step h; with both, the skip can take out the effect of the
    covariates' change since then (a warmer day than the one the seasonal naive repeats)."""
    window_known = inputs[:, :, 1 + layout.past : 1 + layout.past + layout.known_width]  # (B, L, W)
    return torch.cat([known, window_known[:, anchor_source]], dim=-1)


def skip_width(layout: InputLayout, input_size: int) -> int:
    """Inputs of the skip's shared part: the window less its last value, each past covariate's
    window, the static covariates (categorical ones one-hot, the unseen bucket included)."""
    return input_size * (1 + layout.past) + sum(layout.static_categories) + layout.static_numeric


def skip_design(layout: InputLayout, inputs: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    """The skip's shared inputs (B, D) from the encoded window (B, L, C) and static inputs (B, S)."""
    values = inputs[:, :, 0]  # (B, L)
    parts = [values - values[:, -1:]]
    if layout.past:
        past = inputs[:, :, 1 : 1 + layout.past]  # (B, L, P)
        parts.append(past.transpose(1, 2).reshape(past.shape[0], -1))  # (B, P * L), covariate by covariate
    categorical = len(layout.static_categories)
    for index, count in enumerate(layout.static_categories):
        parts.append(functional.one_hot(static[:, index].long(), count).to(values.dtype))  # (B, count)
    if layout.static_numeric:
        parts.append(static[:, categorical:])  # (B, n_numeric)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class LinearPart(nn.Module):
    """A forecaster's anchor plus its linear skip (NLinear-like, with the covariates an ARX
    model), the skip's weights shared: the training job fits it first, before the encoder
    (forecast.training.loop and .linear)."""

    def __init__(
        self, skip: nn.Linear, horizon_skip: HorizonLinear | None, anchor: Anchor, layout: InputLayout
    ) -> None:
        super().__init__()
        self.skip = skip
        self.horizon_skip = horizon_skip
        self.layout = layout
        self.baseline = anchor

    @property
    def anchor_source(self) -> torch.Tensor:
        return self.baseline.source

    def anchor(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> the anchor (B, H) the skip corrects, scaled."""
        return self.baseline.of_inputs(inputs, self.layout)

    def forward(
        self, inputs: torch.Tensor, known: torch.Tensor | None = None, static: torch.Tensor | None = None
    ) -> torch.Tensor:
        """inputs (B, L, C), known (B, H, W), static (B, S) -> forecasts (B, H), scaled."""
        change = skip_change(self.skip, self.horizon_skip, self.layout, self.anchor_source, inputs, known, static)
        return self.anchor(inputs) + change


def skip_change(
    skip: nn.Linear,
    horizon_skip: HorizonLinear | None,
    layout: InputLayout,
    anchor_source: torch.Tensor,
    inputs: torch.Tensor,
    known: torch.Tensor | None,
    static: torch.Tensor | None,
) -> torch.Tensor:
    """What the linear skip adds to the anchor: (B, H)."""
    if static is None:
        static = inputs.new_zeros((inputs.shape[0], 0))
    change: torch.Tensor = skip(skip_design(layout, inputs, static))  # (B, H)
    if horizon_skip is not None:
        change = change + horizon_skip(step_design(layout, inputs, required_known(known), anchor_source))
    return change


def required_known(known: torch.Tensor | None) -> torch.Tensor:
    if known is None or known.shape[1] == 0:
        raise ValueError("this network reads the future-known inputs over the horizon; none were given")
    return known
