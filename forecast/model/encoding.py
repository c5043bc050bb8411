"""The one preprocessing path from raw windows to network inputs and back.

The training job, its evaluation and the API all call `encode` and `decode`; nothing else
scales values or covariates or builds the network's input, so training and serving cannot
drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forecast.model.config import NO_MASK, GapFill, GapRule, ScalingParams
from forecast.model.covariates import NO_COVARIATES, Covariates
from forecast.model.missing import before_first_observed, fill_gaps
from forecast.model.scaling import from_scaled, to_scaled, window_stats

_WINDOW = ScalingParams(mode="window")


@dataclass(slots=True)
class RawWindows:
    """A batch of input windows as the data holds them, before any scaling.

    `calendar` and `future` cover the input window and, for a network that reads the horizon's
    future-known inputs, the horizon after it (L + H steps; L otherwise). Covariates a version
    does not have are zero-width, and for a version without any covariates they may be zero-size
    altogether (served windows share one empty array): `encode` then reads none of them."""

    history: torch.Tensor  # (B, L) raw target values (float64 when served: see `encode`)
    calendar: torch.Tensor  # (B, L or L + H, F) calendar features
    past: torch.Tensor  # (B, L, P) raw past covariates
    future: torch.Tensor  # (B, L or L + H, K) raw future-known covariates
    static: torch.Tensor  # (B, S) codes of categorical static covariates, then raw numeric ones

    def __len__(self) -> int:
        return self.history.shape[0]

    def to(self, device: torch.device) -> RawWindows:
        return RawWindows(*(part.to(device, non_blocking=True) for part in self.parts()))

    def parts(self) -> tuple[torch.Tensor, ...]:
        return (self.history, self.calendar, self.past, self.future, self.static)

    def rows(self, chunk: slice) -> RawWindows:
        return RawWindows(*(part[chunk] for part in self.parts()))

    def pin_memory(self) -> RawWindows:
        return RawWindows(*(part.pin_memory() for part in self.parts()))

    @classmethod
    def without_covariates(cls, history: torch.Tensor, calendar: torch.Tensor) -> RawWindows:
        """Windows of a version without covariates: zero-width past, future and static inputs."""
        batch, length = history.shape
        empty = calendar.new_zeros((batch, length, 0))
        return cls(
            history, calendar, empty, calendar.new_zeros((batch, calendar.shape[1], 0)), history.new_zeros((batch, 0))
        )


@dataclass(slots=True)
class Encoded:
    # (B, L, C): the scaled value, past covariates, calendar, future covariates, and for a network
    # that reads it the mask (1 observed, 0 missing)
    inputs: torch.Tensor
    known: torch.Tensor  # (B, H or 0, F + K): calendar and scaled future covariates over the horizon
    static: torch.Tensor  # (B, S): codes, then scaled numeric static covariates
    loc: torch.Tensor  # (B, 1)
    spread: torch.Tensor  # (B, 1) the scaling's scale
    # (B, 1) the window's own scale, whatever the scaling: conformal intervals calibrated in it
    # follow each window's volatility, also under global scaling (where `spread` is one constant).
    window_spread: torch.Tensor
    observed: torch.Tensor | None = None  # (B, L) bool: the observed points; None when all were

    def select(self, rows: torch.Tensor) -> Encoded:
        """The windows picked by `rows` (a (B,) bool mask or an index)."""
        observed = None if self.observed is None else self.observed[rows]
        return Encoded(
            self.inputs[rows],
            self.known[rows],
            self.static[rows],
            self.loc[rows],
            self.spread[rows],
            self.window_spread[rows],
            observed,
        )


def _standardised(raw: torch.Tensor, loc_scale: tuple[np.ndarray, np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    """(..., K) raw covariates -> (x - loc) / scale per column, in the network's dtype."""
    if raw.shape[-1] == 0:
        return raw.to(dtype)
    loc, scale = (torch.as_tensor(array, dtype=raw.dtype, device=raw.device) for array in loc_scale)
    # Where nothing was observed (a padded series' padding, a window inside a long gap) a
    # covariate reads as its training mean.
    return torch.nan_to_num((raw - loc) / scale, nan=0.0).to(dtype)


def _filled_columns(raw: torch.Tensor, fill: GapFill) -> torch.Tensor:
    """(B, T, K) raw covariates with each column's gaps filled along the window by the target's
    rule (forecast/model/missing.py), except before its first observed value (a padded series'
    padding): that stays NaN and reads as the training mean."""
    if raw.numel() == 0 or bool(torch.isfinite(raw).all()):
        return raw
    batch, steps, width = raw.shape
    rows = raw.transpose(1, 2).reshape(batch * width, steps)
    filled = fill_gaps(rows, fill)
    padding = before_first_observed(filled.observed)  # (B * K, T)
    values = torch.where(padding, torch.full_like(rows, float("nan")), filled.values)
    return values.reshape(batch, width, steps).transpose(1, 2)


def encode(
    raw: RawWindows, scaling: ScalingParams, covariates: Covariates = NO_COVARIATES, *, gaps: GapRule = NO_MASK
) -> Encoded:
    """Raw windows -> network inputs and the window's scale.

    Missing values (NaN) are filled by `forecast.model.missing`'s one rule (`gaps.fill`) and left
    out of the statistics; `gaps.mask` adds the mask as the last input channel, for a network that
    reads it.
    The statistics and the scaling run in history's dtype and only the scaled values take the
    network's (the calendar's) dtype: served windows arrive as float64, so a level of 1e8 keeps
    steps that float32 (spacing 8 at 1e8) would round away. Covariates are standardised with
    their own training statistics."""
    history, dtype = raw.history, raw.calendar.dtype
    length = history.shape[1]
    observed: torch.Tensor | None = None
    if not bool(torch.isfinite(history).all()):  # gaps or padding; a complete batch skips the fill
        filled = fill_gaps(history, gaps.fill)
        history, observed = filled.values, filled.observed
    loc, spread = window_stats(history, scaling, observed)
    scaled = to_scaled(history, loc, spread).to(dtype)  # (B, L)
    window_spread = spread if scaling.mode == "window" else window_stats(history, _WINDOW, observed)[1]
    calendar = raw.calendar  # (B, L [+ H], F)
    mask: list[torch.Tensor] = []
    if gaps.mask:
        mask = [scaled.new_ones(scaled.shape) if observed is None else observed.to(dtype)]
    if covariates.empty:
        inputs = torch.cat([scaled.unsqueeze(-1), calendar[:, :length], *(m.unsqueeze(-1) for m in mask)], dim=-1)
        known = calendar[:, length:]  # (B, H or 0, F)
        return Encoded(inputs, known, raw.static.to(dtype), loc, spread, window_spread, observed)
    standard = covariates.scaling()
    past = _standardised(_filled_columns(raw.past, gaps.fill), standard.past, dtype)  # (B, L, P)
    future = _standardised(_filled_columns(raw.future, gaps.fill), standard.future, dtype)  # (B, L [+ H], K)
    static = _standardised(raw.static, standard.static, dtype)  # (B, S)
    known_all = torch.cat([calendar, future], dim=-1)  # (B, L [+ H], F + K)
    # (B, L, 1 + P + F + K [+ 1])
    inputs = torch.cat([scaled.unsqueeze(-1), past, known_all[:, :length], *(m.unsqueeze(-1) for m in mask)], dim=-1)
    return Encoded(inputs, known_all[:, length:], static, loc, spread, window_spread, observed)


def decode(forecast_scaled: torch.Tensor, encoded: Encoded) -> torch.Tensor:
    """(B, H) scaled forecasts -> (B, H) on the data's original scale, in the history's dtype."""
    return from_scaled(forecast_scaled.to(encoded.loc.dtype), encoded.loc, encoded.spread)
