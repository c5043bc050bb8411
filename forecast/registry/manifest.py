"""The manifest: a version's full description as a pydantic model, stored as manifest.json.

It holds everything needed to rebuild the network and its preprocessing (no pickle: weights
live in model.safetensors, everything else here), plus metrics, calibration and provenance.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forecast.config.training import TrainingConfig
from forecast.model.config import (
    Architecture,
    InputLayout,
    NetworkConfig,
    ScalingParams,
)
from forecast.model.covariates import Covariates
from forecast.model.intervals import Calibration
from forecast.series.features import FEATURE_NAMES, feature_width

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "model.safetensors"
REPORT_FILE = "report.json"


# metrics[block][method][metric], e.g. metrics["test"]["model"]["mse"]; None where a metric is
# undefined (MASE when every training history was constant). NaN and infinity are refused.
Metrics = dict[str, dict[str, dict[str, float | None]]]


class DataFingerprint(BaseModel):
    sha256: str
    source: str
    n_series: int
    n_points: int  # observed or missing, never padding
    first_timestamp: datetime
    last_timestamp: datetime
    # Series that gave at least one window to each block (train, validation, test): short series
    # give what they can. None in versions written before short series were padded.
    series_per_block: dict[str, int] | None = None
    missing_points: int = 0  # points of the data that were missing (gaps)


class Provenance(BaseModel):
    forecast: str
    torch: str
    python: str
    device: str


class GateVerdict(BaseModel):
    """Whether the version beat the seasonal naive on its own test block: a version that did not
    becomes production only with --force. A network that lost is published as its anchor."""

    passed: bool
    metric: str
    model: float
    seasonal_naive: float
    forced: bool = False
    # The trained network's test score when it lost to the seasonal naive and this version is its
    # anchor instead (the seasonal naive, served through the same network with a zero correction):
    # the better of the two, so the name still has a production version.
    network_lost: float | None = None


class Manifest(BaseModel):
    # A NaN would be written as null and then fail to load: refuse it before anything is published.
    model_config = ConfigDict(allow_inf_nan=False)

    # 3: covariates and the horizon's future-known inputs; versions of formats 1 and 2 load as written.
    format_version: Literal[1, 2, 3] = 3
    name: str
    version: int
    created_at: datetime
    training: TrainingConfig
    freq: str
    features: list[str]
    scaling: ScalingParams
    covariates: Covariates = Field(default_factory=Covariates, description="what a request must carry beside values")
    season_length: int
    mase_period: int
    data: DataFingerprint
    metrics: Metrics
    intervals: Calibration
    # The most epochs one member ran (so at most `training.max_epochs`); the report lists every
    # member's. Versions written before this counted all members' epochs together.
    epochs_run: int
    best_epoch: int
    timings: dict[str, float]
    provenance: Provenance
    parent_version: int | None = None
    gate: GateVerdict | None = None  # None in versions written before the gate existed
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")

    @model_validator(mode="before")
    @classmethod
    def _read_format_1(cls, data: Any) -> Any:
        """Format 1 kept a copy of the network's shape at the top level (the training config's is
        the one that counts) and knew only the naive anchor and point-wise recurrence."""
        if not isinstance(data, dict) or data.get("format_version") != 1:
            return data
        training = dict(data.get("training") or {})
        if isinstance(training.get("network"), dict):
            training["network"] = {"anchor_period": 1, "segment_length": 1, **training["network"]}
        else:
            training = {"anchor_period": 1, "segment_length": 1, **training}
        return {**{key: value for key, value in data.items() if key != "network"}, "training": training}

    @field_validator("features")
    @classmethod
    def _known_features(cls, features: list[str]) -> list[str]:
        """A feature the server cannot compute would fail every request of the version."""
        unknown = [feature for feature in features if feature not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"unknown calendar features {unknown}; known: {list(FEATURE_NAMES)}")
        return features

    @property
    def network(self) -> NetworkConfig:
        return self.training.network

    @property
    def layout(self) -> InputLayout:
        """What the network reads: the calendar columns, the covariates and the mask of missing points."""
        return replace(self.covariates.layout(feature_width(self.features)), mask=bool(self.network.missing_mask))

    @property
    def input_channels(self) -> int:
        return self.layout.encoder_channels

    @property
    def arch(self) -> Architecture:
        return self.network.arch

    @property
    def input_size(self) -> int:
        return self.network.input_size

    @property
    def horizon(self) -> int:
        return self.network.horizon
