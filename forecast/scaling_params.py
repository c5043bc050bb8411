"""The fitted scaling of a model as plain data, stored in its manifest (see `forecast.scaling`).

Kept apart from `forecast.scaling` so that reading manifests imports neither torch nor
scikit-learn.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

ScalingMode = Literal["window", "global"]
GlobalScaler = Literal["standard", "minmax", "robust"]


class ScalingParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    mode: ScalingMode
    scaler: GlobalScaler | None = None
    # The fitted sklearn attributes by name (e.g. mean_, scale_), kept for audit and rebuilding.
    fitted: dict[str, float] = {}
    loc: float = 0.0
    scale: float = 1.0
