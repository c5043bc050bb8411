"""The network's shape as plain data: what the manifest stores to rebuild it exactly.

Kept apart from `forecast.networks` so that reading manifests (the `forecast models` commands,
the registry) does not import torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Architecture = Literal["rnn", "lstm", "gru"]


class NetworkConfig(BaseModel):
    """Everything that fixes the network's shape; saved in the manifest to rebuild it exactly."""

    model_config = ConfigDict(frozen=True)

    arch: Architecture
    input_size: int = Field(ge=1)
    horizon: int = Field(ge=1)
    n_features: int = Field(ge=1, description="values per time step: the scaled value plus calendar features")
    hidden_size: int = Field(default=64, ge=1)
    num_layers: int = Field(default=1, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    linear_skip: bool = True
