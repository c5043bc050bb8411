"""The training job as named steps: prepare -> fit -> evaluate -> calibrate -> publish -> promote.

Nothing touches the registry until every step before `publish` has succeeded; the version then
appears in one atomic rename, and the aliases move afterwards under the model's lock.

Under torchrun every rank prepares the same job and fits the network data-parallel; rank 0 alone
goes on to evaluate, calibrate, publish and promote, so one version appears.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from forecast.errors import InvalidInput, NotFound, SeriesTooShort, excerpt
from forecast.model.config import AnchorKind, NetworkConfig
from forecast.model.devices import resolve_device
from forecast.model.intervals import Calibration, calibrate, conformity_scores, empirical_coverage
from forecast.model.network import Forecaster
from forecast.model.predictor import Predictor
from forecast.registry.manifest import (
    REPORT_FILE,
    WEIGHTS_FILE,
    TrainingConfig,
)
from forecast.registry.report import Report
from forecast.registry.store import PRODUCTION, Registry, check_name
from forecast.registry.weights import load_predictor, weights_bytes
from forecast.series.dataset import Dataset, load_dataset
from forecast.series.features import FEATURE_NAMES, default_features
from forecast.series.frequency import cadence
from forecast.series.tables import Columns
from forecast.series.windows import (
    Blocks,
    SeriesStore,
    block_origins,
    build_store,
    padded_for_training,
    series_of_origins,
    split_blocks,
)
from forecast.training.anchor_choice import choose_stand_in
from forecast.training.choices import AnchorChoice, default_input_size, default_scaling, resolve_network
from forecast.training.covariates import fit_covariates, static_rows, store_for
from forecast.training.distributed import SOLO, World, check_world
from forecast.training.evaluate import evaluate_block, evaluation_set, report_samples
from forecast.training.fitting import fit_network, fitting_origins, refit_network
from forecast.training.loop import Objective
from forecast.training.promotion import (
    Comparison,
    anchor_verdict,
    gate_verdict,
    promotion_score,
    require_finite,
)
from forecast.training.publication import draft_manifest, publish_and_promote
from forecast.training.records import Evaluation, Fitted, PreparedJob, TrainOutcome

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Clock:
    """Seconds spent in each phase, for the manifest's timings."""

    started: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)

    def lap(self, phase: str) -> None:
        """Adds the seconds since the last lap to `phase` (a phase may come back: evaluation
        goes on after the refit)."""
        now = time.perf_counter()
        self.marks[phase] = round(self.marks.get(phase, 0.0) + now - self.started, 3)
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
    dataset = _load(data, config)
    features = config.features if config.features is not None else default_features(dataset.freq)
    _check_features(features)
    if config.input_size_picked:
        config = _with_input_size(config, dataset)
    sizes = {
        "input_size": config.network.input_size,
        "horizon": config.network.horizon,
        "val_size": config.val_block_size,
        "test_size": config.test_block_size,
    }
    dataset = padded_for_training(dataset, **sizes)
    store = build_store(dataset, features)
    blocks = split_blocks(store, **sizes)
    series_per_block = _series_per_block(store, blocks, config.network, dataset)
    covariates = fit_covariates(dataset, store, blocks)  # on the training parts only
    store.static = static_rows(dataset, covariates)
    cycle = cadence(dataset.freq)
    evaluation = evaluation_set(
        store, blocks, season_length=cycle.season_length, mase_period=cycle.mase_period, input_size=sizes["input_size"]
    )
    network = resolve_network(
        config.network,
        evaluation,
        dataset.freq,
        has_future_covariates=bool(covariates.future),
        has_gaps=store.observed_before is not None,
    )
    scaling = config.scaling or default_scaling(len(dataset.series))
    config = config.model_copy(update={"network": network, "scaling": scaling})
    job = PreparedJob(
        name, str(data), config, dataset, features, store, blocks, evaluation, resolve_device(config.device), covariates
    )
    job.series_per_block = series_per_block
    if warm_start:
        _start_from_production(job, registry)
    return job


def _load(data: str | Path, config: TrainingConfig) -> Dataset:
    """The data file read with the config's columns, and what was left out of it said."""
    columns = Columns(
        series_id=config.id_column,
        timestamp=config.timestamp_column,
        value=config.value_column,
        timestamp_unit=config.timestamp_unit,
    )
    dataset = load_dataset(
        data,
        columns=columns,
        target=config.target,
        freq=config.freq,
        covariates=config.covariate_columns,
        needed_points=config.val_block_size + config.test_block_size,  # what _series_per_block asks, at least
    )
    if dataset.unused_columns:
        logger.warning(
            "columns not used: %s (name covariates with --past-covariates, --future-covariates or --static-covariates)",
            ", ".join(dataset.unused_columns[:20]) + (", ..." if len(dataset.unused_columns) > 20 else ""),
        )
    if dataset.windowless:
        logger.warning(
            "%d series of one point left out (no window to train, validate or test on), e.g. %s",
            dataset.windowless,
            ", ".join(excerpt(series_id) for series_id in dataset.windowless_ids),
        )
    if dataset.left_out:
        first = dataset.left_out[0]
        left_out, kept = len(dataset.left_out), len(dataset.series)
        logger.warning("%d series left out (too little signal), the first %s; %d series train", left_out, first, kept)
    return dataset


def _start_from_production(job: PreparedJob, registry: Registry) -> None:
    """--warm-start: the production version's weights, which must fit the job's network."""
    job.parent_version = registry.resolve(job.name, alias=PRODUCTION)
    parent = load_predictor(registry, job.name, job.parent_version, torch.device("cpu"))
    if parent.manifest.network != job.config.network or parent.manifest.layout != job.layout:
        raise InvalidInput(
            f"--warm-start needs the production version's network ({parent.manifest.network.model_dump()}) "
            f"and covariates ({parent.manifest.covariates.kinds()}); use --retrain to reuse its configuration"
        )
    job.initial_state = parent.predictor.network.state_dict()


def _with_input_size(config: TrainingConfig, dataset: Dataset) -> TrainingConfig:
    """The config with the input size the job picks for this data (`default_input_size`), logged."""
    history = dataset.median_history
    size = default_input_size(
        dataset.freq,
        config.network.horizon,
        history,
        val_size=config.val_block_size,
        test_size=config.test_block_size,
    )
    fits = config.input_size_fits  # the segment length and an anchor period the user gave
    size = fits * -(-size // fits) if size % fits else max(size, fits)
    logger.info(
        "input size %d (from the frequency %s and the median history of %d points)", size, dataset.freq, history
    )
    try:
        network = NetworkConfig.model_validate({**config.network.model_dump(), "input_size": size})
    except ValidationError as exc:
        raise InvalidInput(
            f"the picked input size {size} does not fit: {exc.errors()[0]['msg']}; pass --input-size"
        ) from exc
    return config.model_copy(update={"network": network})


def _series_per_block(store: SeriesStore, blocks: Blocks, network: NetworkConfig, dataset: Dataset) -> dict[str, int]:
    """How many series give at least one window to each block, logged in one line. A dataset is
    refused only when no series can be trained on, validated or tested."""
    counts: dict[str, int] = {}
    for block in ("train", "validation", "test"):
        origins = block_origins(store, blocks, block, input_size=network.input_size, horizon=network.horizon)
        counts[block] = len(np.unique(series_of_origins(store, origins)))
    empty = [block for block, count in counts.items() if count == 0]
    if empty:
        longest = max(len(s) - s.padding for s in dataset.series)
        validation = int(blocks.validation_end[0] - blocks.train_end[0])
        test = int(store.lengths[0] - blocks.validation_end[0])
        raise SeriesTooShort(
            f"no series gives a window to the {' and '.join(empty)} block(s): the longest has {longest} points, "
            f"and a series needs more than the validation ({validation}) and test ({test}) blocks together, with "
            "an observed point before each; lower --val-size and --test-size (each at least the horizon)"
        )
    padded = sum(1 for s in dataset.series if s.padding)
    if padded or min(counts.values()) < len(dataset.series):
        fed = ", ".join(f"{'training' if block == 'train' else block} {count}" for block, count in counts.items())
        total = len(dataset.series)
        message = "series feeding each block: %s of %d (%d shorter than the input window and the blocks: padded)"
        logger.warning(message, fed, total, padded)
    return counts


def evaluate(job: PreparedJob, predictor: Predictor) -> Evaluation:
    """Every origin of the validation and test blocks, beside the baselines; a network whose
    forecasts are not finite stops the job here."""
    evaluation = Evaluation(
        validation=evaluate_block(predictor, job.evaluation, "validation"),
        test=evaluate_block(predictor, job.evaluation, "test"),
    )
    require_finite(job.name, {"validation": evaluation.validation.metrics, "test": evaluation.test.metrics})
    return evaluation


def anchor_in_place(job: PreparedJob, fitted: Fitted) -> tuple[TrainingConfig, Fitted, Evaluation]:
    """An anchor as a version of this model, for a network that lost to the seasonal naive: the
    same inputs (covariates and all, so the requests that fit the network fit it), no recurrent
    encoder, and a linear skip at zero, which forecasts its anchor exactly
    (forecast.model.network). The best anchor alone on the origins the job chose the network's
    on (or the network's own, when the user fixed it), reading as far back as it was chosen to,
    when it beats the seasonal naive on the test block too; else the seasonal naive (the last
    season when the window holds one, else the chosen period repeated)."""
    shape = job.config.network
    season = cadence(job.dataset.freq).season_length
    seasonal: tuple[AnchorKind, int | None] = ("repeat", season if season <= shape.input_size else shape.anchor_period)
    fallback = _stand_in(job, fitted) if job.stand_ins else None
    chosen: tuple[AnchorKind, int | None] = (
        (fallback.kind, fallback.period) if fallback is not None else (shape.anchor or "repeat", shape.anchor_period)
    )
    lookback = fallback.lookback if fallback is not None and fallback.lookback else shape.input_size
    for kind, period in dict.fromkeys([chosen, seasonal]):
        anchor = NetworkConfig(
            arch=shape.arch,
            # a fitted anchor may read further back than the network did (`stand_in_candidates`)
            input_size=lookback if (kind, period) == chosen else shape.input_size,
            horizon=shape.horizon,
            hidden_size=shape.hidden_size,
            anchor=kind,
            anchor_period=period,
            segment_length=1,
            recurrent=False,
            ensemble=1,
            horizon_inputs=shape.horizon_inputs,
            missing_mask=shape.missing_mask,
            gap_fill=shape.gap_fill,
        )
        network = Forecaster(anchor, job.layout)
        scaling = fitted.predictor.scaling
        predictor = Predictor(network, scaling, job.device, covariates=job.covariates, season_length=season)
        evaluation = evaluate(job, predictor)
        if (kind, period) == seasonal or gate_verdict(evaluation.test.metrics, force=False).passed:
            break
    config = job.config.model_copy(update={"network": anchor})
    return config, replace(fitted, predictor=predictor), evaluation


def _stand_in(job: PreparedJob, fitted: Fitted) -> AnchorChoice:
    """The best of the job's stand-in candidates alone, chosen now that the network has lost."""
    scaling = fitted.predictor.scaling
    objective = Objective.of(job.config.loss, scaling, job.evaluation.denominators["train"], job.covariates)
    keep = functools.partial(fitting_origins, job)
    return choose_stand_in(job.config.network, job.stand_ins, job.layout, job.evaluation, objective, keep)


def calibrate_intervals(evaluation: Evaluation) -> Calibration:
    """Split-conformal on the validation block; the test block's coverage is stored beside it."""
    validation, test = evaluation.validation, evaluation.test
    calibration = calibrate(conformity_scores(validation.actual, validation.forecast, validation.spread))
    calibration.coverage = empirical_coverage(test.actual, test.forecast, test.spread, calibration)
    return calibration


def score_production(job: PreparedJob, registry: Registry) -> Comparison | None:
    """The production version's test error on this job's evaluation set, at the same origins
    whatever its input size, or None when it cannot be scored there (different horizon,
    frequency or features, or covariates this data does not hold). Production may read fewer
    covariates than the new version, or none: a version that adds covariates is compared with
    one without them."""
    try:
        version = registry.resolve(job.name, alias=PRODUCTION)
    except NotFound:
        return None
    production = load_predictor(registry, job.name, version, job.device)
    manifest = production.manifest
    if manifest.horizon != job.config.network.horizon or manifest.freq != job.dataset.freq:
        return None
    if manifest.features != job.features:
        return None
    # Its own covariates from this data, and its own codes for the static ones: its categories
    # may differ from this job's.
    store = store_for(manifest.covariates, job.dataset, job.store)
    if store is None:
        return None
    result = evaluate_block(production.predictor, replace(job.evaluation, store=store), "test")
    return Comparison(version, promotion_score(result.metrics["model"]))


def run_training(
    data: str | Path,
    name: str,
    config: TrainingConfig,
    registry: Registry,
    *,
    promote: bool = False,
    warm_start: bool = False,
    force: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    """The whole job in this one process."""
    outcome = run_training_rank(
        data, name, config, registry, promote=promote, warm_start=warm_start, force=force, progress=progress
    )
    assert outcome is not None  # the one process is rank 0, which publishes
    return outcome


def run_training_rank(
    data: str | Path,
    name: str,
    config: TrainingConfig,
    registry: Registry,
    *,
    promote: bool = False,
    warm_start: bool = False,
    force: bool = False,
    progress: bool = True,
    world: World = SOLO,
) -> TrainOutcome | None:
    """The whole job as one rank of `world`: every rank prepares and fits together; the ranks
    other than 0 then return None, without touching the registry."""
    clock = _Clock()
    with world.step():  # every rank reads the same data: a bad input stops them all, reported once
        job = prepare(data, name, config, registry, warm_start=warm_start)
        shape = job.config.network
        origins = block_origins(job.store, job.blocks, "train", input_size=shape.input_size, horizon=shape.horizon)
        check_world(world, job.device, train_windows=len(fitting_origins(job, origins)))
    clock.lap("prepare_s")
    fitted = fit_network(job, progress=progress and world.is_main, world=world)
    clock.lap("train_s")
    if job.config.refit and world.distributed:  # every rank refits together, before rank 0 alone goes on
        fitted.refitted = refit_network(job, fitted, world)
        clock.lap("refit_s")
    if not world.is_main:
        return None
    evaluation = evaluate(job, fitted.predictor)
    gate = gate_verdict(evaluation.test.metrics, force=force)
    if not gate.passed and not force:
        # The user gets a forecast either way: the anchor, which the network was meant to improve on.
        job.config, fitted, evaluation = anchor_in_place(job, fitted)
        gate = anchor_verdict(evaluation.test.metrics, network_lost=gate.model)
    elif job.config.refit and fitted.refitted is None:  # only a network that is published is refitted
        clock.lap("evaluate_s")
        fitted.refitted = refit_network(job, fitted)
        clock.lap("refit_s")
    calibration = calibrate_intervals(evaluation)
    report = Report(
        epochs=fitted.epochs,
        samples=report_samples(
            job.dataset, job.store, evaluation.test, calibration, input_size=job.config.network.input_size
        ),
    )
    comparison = score_production(job, registry) if promote else None
    clock.lap("evaluate_s")
    timings = {**clock.marks, "train_windows_per_s": round(fitted.windows_seen / max(clock.marks["train_s"], 1e-9), 1)}
    if world.distributed:
        timings["train_processes"] = world.size  # the windows per second are those of all of them
    published = (
        fitted.refitted if fitted.refitted is not None and gate.network_lost is None else fitted.predictor.network
    )
    files = {WEIGHTS_FILE: weights_bytes(published), REPORT_FILE: report.model_dump_json().encode()}
    draft = draft_manifest(job, fitted, evaluation, calibration, timings, gate)
    manifest, promotion = publish_and_promote(registry, job, draft, files, promote=promote, comparison=comparison)
    path = registry.version_location(name, manifest.version)
    return TrainOutcome(name, manifest.version, path, manifest, promotion.promoted, promotion.note)
