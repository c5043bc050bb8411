"""The training job as named steps: prepare (forecast.training.preparation) -> fit -> evaluate ->
calibrate -> publish -> promote.

Nothing touches the registry until every step before `publish` has succeeded; the version then
appears in one atomic rename, and the aliases move afterwards under the model's lock.

Under torchrun every rank prepares the same job and fits the network data-parallel; rank 0 alone
goes on to evaluate, calibrate, publish and promote, so one version appears.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from forecast.errors import NotFound
from forecast.model.config import AnchorKind, NetworkConfig
from forecast.model.intervals import Calibration, calibrate, conformity_scores, empirical_coverage
from forecast.model.network import Forecaster
from forecast.model.predictor import Predictor
from forecast.registry.manifest import REPORT_FILE, WEIGHTS_FILE, TrainingConfig
from forecast.registry.report import Report
from forecast.registry.store import PRODUCTION, Registry
from forecast.registry.weights import load_predictor, weights_bytes
from forecast.series.frequency import cadence
from forecast.series.windows import block_origins
from forecast.training.anchor_choice import choose_stand_in
from forecast.training.choices import AnchorChoice
from forecast.training.covariates import store_for
from forecast.training.distributed import SOLO, World, check_world
from forecast.training.evaluate import evaluate_block, report_samples
from forecast.training.fitting import fit_network, fitting_origins, refit_network
from forecast.training.loop import Objective
from forecast.training.preparation import prepare
from forecast.training.promotion import (
    Comparison,
    anchor_verdict,
    gate_verdict,
    promotion_score,
    require_finite,
)
from forecast.training.publication import draft_manifest, publish_and_promote
from forecast.training.records import Evaluation, Fitted, PreparedJob, TrainOutcome


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
