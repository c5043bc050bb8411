"""The training job's settings (`TrainingConfig`): from flags, a --config file, or a production
version (--retrain), kept in each version's manifest. Below the registry, which stores them, and
the training loop, which reads them: neither imports the other for them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from forecast.model.config import GlobalScaler, LossName, NetworkConfig, ScalingMode
from forecast.model.covariates import MAX_COVARIATE_NAME_CHARS
from forecast.series.covariates import CovariateColumns

CovariateColumn = Annotated[str, StringConstraints(min_length=1, max_length=MAX_COVARIATE_NAME_CHARS + 12)]


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


class EpochRecord(BaseModel):
    member: int = 0  # which member of an ensemble
    epoch: int
    train_loss: float
    val_loss: float
    learning_rate: float
    seconds: float
