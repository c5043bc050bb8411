"""Gaps in a window: which points were observed, and the values the network reads in their place.

A missing point (a NaN posted or stored, a timestamp missing from a regular grid, or the padding
before a series shorter than the window) is never read as a number. `fill_gaps` gives every
window one rule, in training, evaluation and serving alike:

- inside a gap (observed points on both sides): the straight line between its neighbours;
- after the last observed point: that point, carried forward (the naive forecast's value);
- before the first observed point (padding, or a gap the window starts in): the window's last
  observed value, so that the anchor of a series shorter than its season is the naive forecast
  where the seasonal one has no value to repeat, and the scaled padding is zero.

The linear fill is the default, measured in bench/gaps.py against carrying the last value
forward inside gaps too (`gap_fill="previous"`, docs/guides/data.md). The network also reads
the mask itself (`missing_mask`), so a filled value never passes for an observed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from forecast.model.config import GapFill


@dataclass(slots=True)
class FilledWindows:
    values: torch.Tensor  # (B, L) with every missing point filled
    observed: torch.Tensor  # (B, L) bool: the points that were observed


def observed_points(history: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the finite points."""
    return torch.isfinite(history)


def before_first_observed(observed: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the points before each window's first observed one (a short series' padding)."""
    return observed.int().cummax(dim=1).values == 0


def fill_gaps(history: torch.Tensor, fill: GapFill = "linear") -> FilledWindows:
    """(B, L) raw windows with NaN where a point is missing -> the filled windows and the mask.
    A window without any observed point stays NaN (its caller refuses or drops it)."""
    observed = observed_points(history)
    length = history.shape[1]
    positions = torch.arange(length, device=history.device).expand_as(history)
    # Index of the last observed point at or before each position (-1: none), and of the next
    # observed point at or after it (length: none).
    before = torch.where(observed, positions, torch.full_like(positions, -1)).cummax(dim=1).values
    after_flipped = torch.where(observed, positions, torch.full_like(positions, length)).flip(1)
    after = after_flipped.cummin(dim=1).values.flip(1)
    clean = torch.where(observed, history, torch.zeros_like(history))
    value_before = clean.gather(1, before.clamp(min=0))
    value_after = clean.gather(1, after.clamp(max=length - 1))
    span = (after - before).clamp(min=1).to(history.dtype)
    if fill == "linear":
        inside = value_before + (value_after - value_before) * (positions - before).to(history.dtype) / span
    else:
        inside = value_before
    last_index = before[:, -1:]  # (B, 1)
    last_value = clean.gather(1, last_index.clamp(min=0))  # (B, 1)
    filled = torch.where(before < 0, last_value.expand_as(history), inside)  # leading: the last observed value
    filled = torch.where(after >= length, value_before, filled)  # trailing: carried forward
    filled = torch.where(observed, history, filled)
    filled = torch.where(last_index >= 0, filled, torch.full_like(filled, float("nan")))
    return FilledWindows(filled, observed)


Counts = TypeVar("Counts", torch.Tensor, np.ndarray)


def too_thin(padding: Counts, observed: Counts, length: int, season: int) -> Counts:
    """Where a window gives the network too little to read, elementwise over each window's padding
    (points before its series' first observed one) and its observed points: fewer than two
    observed points (no spread to scale by), and for seasonal data a season or more of padding,
    fewer observed points than half a season, or a series shorter than a season (a season longer
    than the window counts as the window). The predictor forecasts such a window by its anchor alone, and training does
    not fit on it: the network's correction, fitted on whole windows, loses to the anchor there
    (bench/gaps.py), and the target of a window scaled by one point's spread is noise."""
    thin = observed < 2
    if season == 1:  # no season to wait for: any two points will do
        return thin
    window_season = min(season, length)
    thin = thin | (padding >= window_season) | (observed * 2 < window_season)
    if season <= length:
        thin = thin | (length - padding < season)
    return thin
