"""The records the training job's steps hand each other (`forecast.training.job`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from forecast.config.training import EpochRecord, TrainingConfig
from forecast.model.config import InputLayout
from forecast.model.covariates import NO_COVARIATES, Covariates
from forecast.model.network import Network
from forecast.model.predictor import Predictor
from forecast.registry.manifest import Manifest
from forecast.series.dataset import Dataset
from forecast.series.features import feature_width
from forecast.series.windows import Blocks, SeriesStore
from forecast.training.choices import AnchorChoice
from forecast.training.evaluate import BlockResult, EvaluationSet
from forecast.training.loop import Replay


@dataclass(slots=True)
class PreparedJob:
    """What the steps after `prepare` need: validated data, its blocks and the evaluation set."""

    name: str
    source: str
    config: TrainingConfig
    dataset: Dataset
    features: list[str]
    store: SeriesStore
    blocks: Blocks
    evaluation: EvaluationSet
    device: torch.device
    covariates: Covariates = NO_COVARIATES
    initial_state: dict[str, torch.Tensor] | None = None
    parent_version: int | None = None
    series_per_block: dict[str, int] = field(default_factory=dict)  # series giving a window to each block
    # The anchors that may stand in for a network that loses the gate, chosen among only then
    # (forecast.training.anchor_choice.choose_stand_in); empty: the user fixed the anchor, which stands in.
    stand_ins: list[AnchorChoice] = field(default_factory=list)

    @property
    def layout(self) -> InputLayout:
        return replace(
            self.covariates.layout(feature_width(self.features)), mask=bool(self.config.network.missing_mask)
        )


@dataclass(slots=True)
class Fitted:
    predictor: Predictor  # the network evaluation scores (fitted on the training part)
    epochs: list[EpochRecord]
    best_epoch: int
    windows_seen: int  # training windows over every epoch run
    # The same network refitted on the whole history with the choices the fit made, which the
    # version publishes in place of `predictor` (the training job's `refit`); None without a refit.
    refitted: Network | None = None
    replays: list[Replay] = field(default_factory=list)  # each member's choices, for the refit


@dataclass(slots=True)
class Evaluation:
    validation: BlockResult
    test: BlockResult


@dataclass(slots=True)
class TrainOutcome:
    name: str
    version: int
    path: str  # the version's folder, or its s3:// URL
    manifest: Manifest
    promoted: bool
    promotion_note: str
