"""A model's shape and its fitted scaling as plain data: what the manifest stores to rebuild it.

Kept apart from `forecast.model.network` and `forecast.model.scaling` so that reading manifests
(the `forecast models` commands, the registry) imports neither torch nor scikit-learn.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Architecture = Literal["rnn", "lstm", "gru"]
ScalingMode = Literal["window", "global"]
Combine = Literal["mean", "median"]
# mse and mae on errors in the scaled space; mase on errors over each series' in-sample seasonal MAE.
LossName = Literal["mse", "mae", "mase", "msse"]
GlobalScaler = Literal["standard", "minmax", "robust"]


class NetworkConfig(BaseModel):
    """Everything that fixes the network's shape, except its input channels, which follow from
    the calendar features (`input_channels`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: Architecture
    input_size: int = Field(ge=1)
    horizon: int = Field(ge=1)
    hidden_size: int = Field(default=64, ge=1)
    num_layers: int = Field(default=1, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    linear_skip: bool = True
    # The forecast is this baseline plus what the network adds (its head starts at zero): step h
    # repeats the value `anchor_period` steps before it, so 1 is the naive forecast and a season
    # (24 for hourly data) the seasonal naive. None: the training job picks it on validation.
    anchor_period: int | None = Field(default=None, ge=1)
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
    """Values per time step the network reads: the scaled value, then the calendar features
    (the order `forecast.model.encoding.encode` stacks them in)."""
    return 1 + feature_count


class ScalingParams(BaseModel):
    """The fitted scaling of a model (see `forecast.model.scaling`)."""

    model_config = ConfigDict(frozen=True)

    mode: ScalingMode
    scaler: GlobalScaler | None = None
    # The fitted sklearn attributes by name (e.g. mean_, scale_), kept for audit and rebuilding.
    fitted: dict[str, float] = {}
    loc: float = 0.0
    scale: float = 1.0  # the divisor of `(x - loc) / scale`
