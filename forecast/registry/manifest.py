"""The manifest: a version's full description as a pydantic model, stored as manifest.json.

It holds everything needed to rebuild the network and its preprocessing (no pickle: weights
live in model.safetensors, everything else here), plus metrics, calibration and provenance.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from forecast.model.config import (
    Architecture,
    GlobalScaler,
    InputLayout,
    LossName,
    NetworkConfig,
    ScalingMode,
    ScalingParams,
)
from forecast.model.covariates import MAX_COVARIATE_NAME_CHARS, Covariates
from forecast.model.intervals import Calibration
from forecast.series.covariates import CovariateColumns
from forecast.series.features import FEATURE_NAMES, feature_width

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "model.safetensors"
REPORT_FILE = "report.json"

CovariateColumn = Annotated[str, StringConstraints(min_length=1, max_length=MAX_COVARIATE_NAME_CHARS + 12)]

# metrics[block][method][metric], e.g. metrics["test"]["model"]["mse"]; None where a metric is
# undefined (MASE when every training history was constant). NaN and infinity are refused.
Metrics = dict[str, dict[str, dict[str, float | None]]]


def _provisional_input_size(network: dict[str, Any]) -> int:
    """The shortest window a segment length divides and an anchor period fits in."""
    segment = network.get("segment_length") or 1
    period = network.get("anchor_period") or 1
    return segment * -(-period // segment) if isinstance(segment, int) and isinstance(period, int) else 1


class TrainingConfig(BaseModel):
    """The training job's settings: from flags, a --config file, or a production version (--retrain)."""

    model_config = ConfigDict(extra="forbid")

    network: NetworkConfig
    freq: str | None = None
    target: str | None = None
    id_column: str = "series_id"
    timestamp_column: str = "timestamp"
    value_column: str = "value"
    timestamp_unit: Literal["s", "ms", "us", "ns"] | None = Field(
        default=None, description="numeric timestamps are Unix time in this unit; None: dates"
    )
    scaling: ScalingMode | None = Field(default=None, description="None: global for one series, window for several")
    scaler: GlobalScaler = "standard"
    features: list[str] | None = Field(default=None, description="calendar features; None picks them by frequency")
    # Covariate columns by kind (a static one may end in ':categorical' to make numbers categories).
    past_covariates: list[CovariateColumn] = Field(default_factory=list, description="known up to the origin")
    future_covariates: list[CovariateColumn] = Field(default_factory=list, description="known over the horizon too")
    static_covariates: list[CovariateColumn] = Field(default_factory=list, description="one value per series")
    static_data: str | None = Field(default=None, description="a per-series file holding the static covariates")
    val_size: int | None = Field(default=None, ge=1, description="defaults to the horizon")
    test_size: int | None = Field(default=None, ge=1, description="defaults to the horizon")
    max_epochs: int = Field(default=30, ge=1)
    patience: int = Field(default=5, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    clip_norm: float = Field(default=1.0, gt=0)
    loss: LossName = "mae"
    solve_skip: bool = Field(default=True, description="solve the linear skip by ridge regression before the epochs")
    windows_per_epoch: int = Field(default=100_000, ge=1, description="sampled afresh each epoch when there are more")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Once the network passes the gate, fit it again on the whole history (training, validation
    # and test) with the steps and choices the fit found, and publish that network; the evaluated
    # metrics stay in the manifest as its accuracy estimate (forecast.training.loop.refit).
    refit: bool = True
    # True when the input size was left to the job: it picks it from the frequency and the
    # history lengths (forecast.training.choices.default_input_size) and records it in `network`.
    input_size_picked: bool = False

    @model_validator(mode="before")
    @classmethod
    def _gather_network(cls, data: Any) -> Any:
        """Flags and config files name the network's fields flat (`hidden_size = 128`); they
        override the ones of a nested `network` (a production version's, with --retrain)."""
        if not isinstance(data, dict):
            return data
        flat = {key: data[key] for key in NetworkConfig.model_fields if key in data}
        nested = data.get("network")
        if not flat and not isinstance(nested, dict):
            return data
        network = nested.model_dump() if isinstance(nested, NetworkConfig) else dict(nested or {})
        rest = {key: value for key, value in data.items() if key not in flat}
        network = {**network, **flat}
        if network.get("input_size") is None and "horizon" in network:
            # Left to the job, which knows the data: until it picks one, the shortest window the
            # other choices fit (a segment length divides it, an anchor period fits in it).
            network["input_size"] = _provisional_input_size(network)
            rest["input_size_picked"] = True
        return {**rest, "network": network}

    @property
    def input_size_fits(self) -> int:
        """The smallest input size the network's other choices allow (see `_provisional_input_size`)."""
        return _provisional_input_size(self.network.model_dump())

    @property
    def covariate_columns(self) -> CovariateColumns:
        return CovariateColumns(
            past=list(self.past_covariates),
            future=list(self.future_covariates),
            static=list(self.static_covariates),
            static_data=self.static_data,
        )

    @property
    def val_block_size(self) -> int:
        """Validation points per series: --val-size, else the horizon."""
        return self.val_size or self.network.horizon

    @property
    def test_block_size(self) -> int:
        """Test points per series: --test-size, else the horizon."""
        return self.test_size or self.network.horizon


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


class EpochRecord(BaseModel):
    member: int = 0  # which member of an ensemble
    epoch: int
    train_loss: float
    val_loss: float
    learning_rate: float
    seconds: float


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
