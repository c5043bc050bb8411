"""The training job as named steps: prepare -> fit -> evaluate -> calibrate -> publish -> promote.

Nothing touches the registry until every step before `publish` has succeeded; the version then
appears in one atomic rename, and the aliases move afterwards under the model's lock.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from forecast import __version__
from forecast.errors import InvalidInput, NotFound
from forecast.model.config import input_channels
from forecast.model.devices import resolve_device
from forecast.model.intervals import Calibration, calibrate, conformity_scores, empirical_coverage
from forecast.model.predictor import Predictor
from forecast.model.scaling import fit_scaling
from forecast.registry.manifest import (
    REPORT_FILE,
    WEIGHTS_FILE,
    DataFingerprint,
    EpochRecord,
    Manifest,
    Provenance,
    TrainingConfig,
)
from forecast.registry.store import PRODUCTION, Registry, check_name
from forecast.registry.weights import load_predictor, weights_bytes
from forecast.series.dataset import Columns, Dataset, load_dataset
from forecast.series.features import FEATURE_NAMES, default_features, feature_width
from forecast.series.frequency import cadence
from forecast.series.windows import Blocks, SeriesStore, block_origins, build_store, split_blocks, training_parts
from forecast.training.evaluate import BlockResult, EvaluationSet, evaluate_block, evaluation_set, report_samples
from forecast.training.loop import fit
from forecast.training.promotion import Comparison, Promotion, move_production, promotion_score, require_finite


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
    initial_state: dict[str, torch.Tensor] | None = None
    parent_version: int | None = None

    @property
    def input_channels(self) -> int:
        return input_channels(feature_width(self.features))


@dataclass(slots=True)
class Fitted:
    predictor: Predictor
    epochs: list[EpochRecord]
    best_epoch: int
    windows_seen: int  # training windows over every epoch run


@dataclass(slots=True)
class Evaluation:
    validation: BlockResult
    test: BlockResult


@dataclass(slots=True)
class TrainOutcome:
    name: str
    version: int
    path: Path
    manifest: Manifest
    promoted: bool
    promotion_note: str


@dataclass(slots=True)
class _Clock:
    """Seconds spent in each phase, for the manifest's timings."""

    started: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.marks[phase] = round(now - self.started, 3)
        self.started = now


def _check_features(features: list[str]) -> None:
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if unknown:
        raise InvalidInput(f"unknown calendar features {unknown}; choose from {list(FEATURE_NAMES)}")


def prepare(
    data: str | Path, name: str, config: TrainingConfig, registry: Registry, *, warm_start: bool
) -> PreparedJob:
    """Load and validate the data, cut the blocks, build the evaluation set, and find the
    weights to start from."""
    check_name(name)
    columns = Columns(series_id=config.id_column, timestamp=config.timestamp_column, value=config.value_column)
    dataset = load_dataset(data, columns=columns, target=config.target, freq=config.freq)
    features = config.features if config.features is not None else default_features(dataset.freq)
    _check_features(features)
    store = build_store(dataset, features)
    blocks = split_blocks(
        store,
        input_size=config.network.input_size,
        horizon=config.network.horizon,
        val_size=config.val_block_size,
        test_size=config.test_block_size,
    )
    cycle = cadence(dataset.freq)
    evaluation = evaluation_set(store, blocks, season_length=cycle.season_length, mase_period=cycle.mase_period)
    job = PreparedJob(
        name, str(data), config, dataset, features, store, blocks, evaluation, resolve_device(config.device)
    )
    if warm_start:
        job.parent_version = registry.resolve(name, alias=PRODUCTION)
        parent = load_predictor(registry, name, job.parent_version, torch.device("cpu"))
        if parent.manifest.network != config.network:
            raise InvalidInput(
                f"--warm-start needs the production version's network ({parent.manifest.network.model_dump()}); "
                "use --retrain to reuse its configuration"
            )
        job.initial_state = parent.predictor.network.state_dict()
    return job


def fit_network(job: PreparedJob, *, progress: bool) -> Fitted:
    """Fit the scaler on the training part only, then the network, with early stopping."""
    all_values = np.concatenate([s.values for s in job.dataset.series])  # float64, laid out like the store
    scaling_input = np.concatenate(training_parts(all_values, job.store, job.blocks))
    scaling = fit_scaling(job.config.scaling, job.config.scaler, scaling_input)
    shape = job.config.network
    origins = {
        block: block_origins(job.store, job.blocks, block, input_size=shape.input_size, horizon=shape.horizon)
        for block in ("train", "validation")
    }
    result = fit(
        job.store,
        origins["train"],
        origins["validation"],
        job.input_channels,
        scaling,
        job.config,
        job.device,
        initial_state=job.initial_state,
        progress=progress,
    )
    windows_seen = sum(min(len(origins["train"]), job.config.windows_per_epoch) for _ in result.epochs)
    return Fitted(Predictor(result.network, scaling, job.device), result.epochs, result.best_epoch, windows_seen)


def evaluate(job: PreparedJob, predictor: Predictor) -> Evaluation:
    """Every origin of the validation and test blocks, beside the baselines; a network whose
    forecasts are not finite stops the job here."""
    evaluation = Evaluation(
        validation=evaluate_block(predictor, job.evaluation, "validation"),
        test=evaluate_block(predictor, job.evaluation, "test"),
    )
    require_finite(job.name, {"validation": evaluation.validation.metrics, "test": evaluation.test.metrics})
    return evaluation


def calibrate_intervals(evaluation: Evaluation) -> Calibration:
    """Split-conformal on the validation block; the test block's coverage is stored beside it."""
    validation, test = evaluation.validation, evaluation.test
    calibration = calibrate(conformity_scores(validation.actual, validation.forecast, validation.spread))
    calibration.coverage = empirical_coverage(test.actual, test.forecast, test.spread, calibration)
    return calibration


def score_production(job: PreparedJob, registry: Registry) -> Comparison | None:
    """The production version's test error on this job's evaluation set, or None when it cannot
    be scored there (different horizon, frequency or features, or series too short for its input)."""
    try:
        version = registry.resolve(job.name, alias=PRODUCTION)
    except NotFound:
        return None
    production = load_predictor(registry, job.name, version, job.device)
    manifest, lengths = production.manifest, job.store.lengths
    needed = manifest.input_size + manifest.horizon + job.config.val_block_size + job.config.test_block_size
    if manifest.horizon != job.config.network.horizon or manifest.freq != job.dataset.freq:
        return None
    if manifest.features != job.features or (lengths < needed).any():
        return None
    result = evaluate_block(production.predictor, job.evaluation, "test")
    return Comparison(version, promotion_score(result.metrics["model"]))


def draft_manifest(
    job: PreparedJob, fitted: Fitted, evaluation: Evaluation, calibration: Calibration, timings: dict[str, float]
) -> Manifest:
    """The manifest of the version to publish; the registry fills in its number and checksums."""
    dataset = job.dataset
    return Manifest(
        name=job.name,
        version=0,
        created_at=datetime.now(UTC),
        training=job.config,
        freq=dataset.freq,
        features=job.features,
        scaling=fitted.predictor.scaling,
        season_length=cadence(dataset.freq).season_length,
        mase_period=cadence(dataset.freq).mase_period,
        data=DataFingerprint(
            sha256=dataset.fingerprint(),
            source=job.source,
            n_series=len(dataset.series),
            n_points=dataset.n_points,
            first_timestamp=min(s.timestamps[0] for s in dataset.series).to_pydatetime(),
            last_timestamp=max(s.timestamps[-1] for s in dataset.series).to_pydatetime(),
        ),
        metrics={"validation": evaluation.validation.metrics, "test": evaluation.test.metrics},
        intervals=calibration,
        epochs_run=len(fitted.epochs),
        best_epoch=fitted.best_epoch,
        timings=timings,
        provenance=Provenance(
            forecast=__version__, torch=torch.__version__, python=platform.python_version(), device=str(job.device)
        ),
        parent_version=job.parent_version,
    )


def publish_and_promote(
    registry: Registry, job: PreparedJob, draft: Manifest, files: dict[str, bytes], *, promote: bool,
    comparison: Comparison | None,
) -> tuple[Manifest, Promotion]:  # fmt: skip
    """Write the version atomically, then move `production` by the rules, under the model's lock."""
    with registry.locked(job.name):
        manifest = registry.publish(job.name, files, draft)
        score = promotion_score(manifest.metrics["test"]["model"])
        promotion = move_production(registry, job.name, manifest.version, score, promote, comparison)
    return manifest, promotion


def run_training(
    data: str | Path,
    name: str,
    config: TrainingConfig,
    registry: Registry,
    *,
    promote: bool = False,
    warm_start: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    clock = _Clock()
    job = prepare(data, name, config, registry, warm_start=warm_start)
    clock.lap("prepare_s")
    fitted = fit_network(job, progress=progress)
    clock.lap("train_s")
    evaluation = evaluate(job, fitted.predictor)
    calibration = calibrate_intervals(evaluation)
    report = {
        "epochs": [record.model_dump() for record in fitted.epochs],
        "samples": report_samples(
            job.dataset, job.store, evaluation.test, calibration, input_size=config.network.input_size
        ),
    }
    comparison = score_production(job, registry) if promote else None
    clock.lap("evaluate_s")
    timings = {**clock.marks, "train_windows_per_s": round(fitted.windows_seen / max(clock.marks["train_s"], 1e-9), 1)}
    files = {WEIGHTS_FILE: weights_bytes(fitted.predictor.network), REPORT_FILE: json.dumps(report).encode()}
    draft = draft_manifest(job, fitted, evaluation, calibration, timings)
    manifest, promotion = publish_and_promote(registry, job, draft, files, promote=promote, comparison=comparison)
    path = registry.version_dir(name, manifest.version)
    return TrainOutcome(name, manifest.version, path, manifest, promotion.promoted, promotion.note)
