"""A model's shape and its fitted scaling as plain data: what the manifest stores to rebuild it.

Kept apart from `forecast.model.network` and `forecast.model.scaling` so that reading manifests
(the `forecast models` commands, the registry) imports neither torch nor scikit-learn.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Architecture = Literal["rnn", "lstm", "gru"]
ScalingMode = Literal["window", "global"]
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
