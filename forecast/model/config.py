"""A model's shape and its fitted scaling as plain data: what the manifest stores to rebuild it.

Kept apart from `forecast.model.network` and `forecast.model.scaling` so that reading manifests
(the `forecast models` commands, the registry) imports neither torch nor scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# The network computes in float32: a larger input would become inf on the way in.
NETWORK_MAX_VALUE = float(np.finfo(np.float32).max)

Architecture = Literal["rnn", "lstm", "gru"]
# How a gap between two observed points is filled (forecast.model.missing): the straight line
# between them, or the value before it carried forward.
GapFill = Literal["linear", "previous"]
# The baseline a network corrects (forecast.model.anchors): a value repeated `anchor_period` steps
# back, the random walk with drift, the Theta method, or an autoregression fitted to the window's
# values (`ar`) or to its steps (`ari`, ARIMA(p,1,0)), the last four on the window with its season
# (`anchor_period`) taken out.
AnchorKind = Literal["repeat", "drift", "theta", "ar", "ari", "combined"]


@dataclass(frozen=True, slots=True)
class GapRule:
    """A network's reading of gaps: how they are filled, and whether it reads the mask channel."""

    mask: bool = False
    fill: GapFill = "linear"


NO_MASK = GapRule()  # a network written before gaps were accepted: complete windows, no mask
ScalingMode = Literal["window", "global"]
Combine = Literal["mean", "median"]
# mse and mae on errors in the scaled space; mase on errors over each series' in-sample seasonal MAE.
LossName = Literal["mse", "mae", "mase", "msse"]
GlobalScaler = Literal["standard", "minmax", "robust"]


MAX_INPUT_SIZE = 100_000
MAX_HORIZON = 100_000
MAX_HIDDEN_SIZE = 4096
MAX_LAYERS = 16


class NetworkConfig(BaseModel):
    """Everything that fixes the network's shape, except its inputs, which follow from the
    calendar features and the covariates (`InputLayout`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Architecture
    # Bounds far past any network worth serving, so that a manifest cannot make a reader build one
    # that takes minutes or gigabytes (a hostile file naming ten thousand layers); a request's
    # horizon is bounded alike (api/http/schemas.py MAX_HORIZON).
    input_size: int = Field(ge=1, le=MAX_INPUT_SIZE)
    horizon: int = Field(ge=1, le=MAX_HORIZON)
    hidden_size: int = Field(default=64, ge=1, le=MAX_HIDDEN_SIZE)
    num_layers: int = Field(default=1, ge=1, le=MAX_LAYERS)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    linear_skip: bool = True
    # The forecast is this baseline plus what the network adds (its head starts at zero): step h
    # repeats the value `anchor_period` steps before it, so 1 is the naive forecast and a season
    # (24 for hourly data) the seasonal naive. None: the training job picks it on validation.
    anchor_period: int | None = Field(default=None, ge=1)
    # Which baseline: `repeat` (the value `anchor_period` back), `drift`, `theta`, `ar` or `ari`
    # (each window's trend and level, or its own autoregression, its season `anchor_period` taken out). None: `repeat` in versions written
    # before the other anchors existed; the training job picks it on validation with the period.
    anchor: AnchorKind | None = None
    # Points the recurrent encoder reads per step (SegRNN): 24 reads a week of hourly data in 7
    # steps instead of 168. None: the training job picks it from the frequency.
    segment_length: int | None = Field(default=None, ge=1)
    # False leaves the anchor and the linear skip alone (NLinear-like): the ablation that shows
    # what the recurrent encoder adds.
    recurrent: bool = True
    # Members trained with different seeds, combined step by step. None: the training job's
    # default (3, from bench/accuracy.py); a network built without that choice is a single one.
    ensemble: int | None = Field(default=None, ge=1, le=32)
    combine: Combine = "mean"
    # The future-known inputs over the horizon (the calendar features, then the future-known
    # covariates) reach the head and the linear skip, step by step. None: off, as in versions
    # written before covariates existed; the training job turns it on.
    horizon_inputs: bool | None = None
    # The encoder reads a mask channel (1 observed, 0 missing) beside the filled values. None: off,
    # as in versions written before gaps were accepted; the training job turns it on for data with
    # gaps or series shorter than the window.
    missing_mask: bool | None = None
    # How a gap inside the window is filled before scaling (forecast.model.missing): "linear"
    # (the default, bench/gaps.py) or "previous" (the last observed value carried forward).
    gap_fill: GapFill = "linear"

    @property
    def gap_rule(self) -> GapRule:
        return GapRule(mask=bool(self.missing_mask), fill=self.gap_fill)

    @model_validator(mode="after")
    def _fits_the_window(self) -> NetworkConfig:
        if self.anchor_period is not None and self.anchor_period > self.input_size:
            raise ValueError(f"anchor_period {self.anchor_period} is longer than the input size {self.input_size}")
        if not self.recurrent and not self.linear_skip:
            raise ValueError("a network without the recurrent encoder needs the linear skip")
        if self.segment_length is not None and self.input_size % self.segment_length:
            raise ValueError(f"segment_length {self.segment_length} does not divide the input size {self.input_size}")
        return self


def input_channels(feature_count: int) -> int:
    """Values per time step the network reads without covariates: the scaled value, then the
    calendar features (the order `forecast.model.encoding.encode` stacks them in)."""
    return 1 + feature_count


def static_embedding_width(categories: int) -> int:
    """Width of a categorical static covariate's embedding: a handful of dimensions, never more
    than its categories need (the bucket for unseen ones included)."""
    return max(1, min(8, (categories + 1) // 2))


@dataclass(frozen=True, slots=True)
class InputLayout:
    """The widths of what the network reads, besides the target's values:

    - `calendar`: calendar feature columns (a sine and a cosine per cycle), known at every step;
    - `past`: past covariates, known up to the forecast origin;
    - `future`: future-known covariates, known over the horizon too;
    - `static_categories`: each categorical static covariate's number of codes (code 0 is the
      bucket for categories unseen in training); `static_numeric`: numeric static covariates.

    Each time step of the encoder reads the value, the past covariates, the calendar, the
    future covariates, the mask and the embedded static covariates, in that order."""

    calendar: int = 0
    past: int = 0
    future: int = 0
    static_categories: tuple[int, ...] = ()
    static_numeric: int = 0
    mask: bool = False  # the mask of missing points, the encoder's last channel (`missing_mask`)

    @classmethod
    def of(cls, layout: InputLayout | int) -> InputLayout:
        """A layout, or the input channels of a network without covariates (the value and the
        calendar columns), as networks were described before covariates."""
        return layout if isinstance(layout, InputLayout) else cls(calendar=layout - 1)

    @property
    def static_width(self) -> int:
        """Columns of the static input: one code per categorical covariate, then the numeric ones."""
        return len(self.static_categories) + self.static_numeric

    @property
    def static_embedded_width(self) -> int:
        return sum(static_embedding_width(count) for count in self.static_categories) + self.static_numeric

    @property
    def known_width(self) -> int:
        """Future-known columns per step: the calendar, then the future-known covariates."""
        return self.calendar + self.future

    @property
    def encoder_channels(self) -> int:
        return 1 + self.past + self.known_width + int(self.mask) + self.static_embedded_width

    @property
    def mask_channel(self) -> int:
        """The mask's channel in the encoded inputs (before the embedded static covariates, which
        the network appends)."""
        return 1 + self.past + self.known_width

    @property
    def has_covariates(self) -> bool:
        return bool(self.past or self.future or self.static_width)


class ScalingParams(BaseModel):
    """The fitted scaling of a model (see `forecast.model.scaling`)."""

    model_config = ConfigDict(frozen=True)

    mode: ScalingMode
    scaler: GlobalScaler | None = None
    # The fitted sklearn attributes by name (e.g. mean_, scale_), kept for audit and rebuilding.
    fitted: dict[str, float] = {}
    loc: float = 0.0
    scale: float = 1.0  # the divisor of `(x - loc) / scale`
