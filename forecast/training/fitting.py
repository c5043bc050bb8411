"""Fitting the network of a prepared job: the anchor left open chosen once the scaling is fitted
(forecast.training.anchor_choice), every member fitted on the windows it will read, and, for a
version that will be published, every member refitted on the whole history with its fit's
choices (forecast.training.loop.refit). Under torchrun every rank runs these together."""

from __future__ import annotations

import functools

import numpy as np
import torch

from forecast.config.training import EpochRecord
from forecast.model.config import NetworkConfig
from forecast.model.missing import too_thin
from forecast.model.network import Ensemble, Forecaster, Network, member_state
from forecast.model.predictor import Predictor
from forecast.model.scaling import fit_scaling
from forecast.series.frequency import cadence
from forecast.series.windows import block_origins, origins_between, training_parts, window_counts
from forecast.training.anchor_choice import choose_network_anchor
from forecast.training.choices import anchor_candidates, stand_in_candidates
from forecast.training.distributed import SOLO, World
from forecast.training.loop import FitData, FitResult, Objective, fit, refit
from forecast.training.records import Fitted, PreparedJob


def fit_network(job: PreparedJob, *, progress: bool, world: World = SOLO) -> Fitted:
    """Fit the scaler on the training part only, then the network, with early stopping; every
    rank of `world` fits the same members together."""
    all_values = np.concatenate([s.values for s in job.dataset.series])  # float64, laid out like the store
    scaling_input = np.concatenate(training_parts(all_values, job.store, job.blocks))
    assert job.config.scaling is not None  # prepare_job resolved it
    scaling = fit_scaling(job.config.scaling, job.config.scaler, scaling_input)
    shape = job.config.network
    origins = {
        block: fitting_origins(
            job, block_origins(job.store, job.blocks, block, input_size=shape.input_size, horizon=shape.horizon)
        )
        for block in ("train", "validation")
    }
    objective = Objective.of(job.config.loss, scaling, job.evaluation.denominators["train"], job.covariates)
    if shape.anchor_period is None:
        shape = _choose_anchors(job, objective)
    members: list[Forecaster] = []
    results: list[FitResult] = []
    epochs: list[EpochRecord] = []
    best_epochs: list[int] = []
    data = FitData(job.store, origins["train"], origins["validation"], job.layout, objective)
    for member in range(shape.ensemble or 1):  # each its own seed; the ensemble is calibrated as a whole
        result = fit(
            data,
            job.config,
            job.device,
            seed=job.config.seed + member,
            initial_state=_member_state(job.initial_state, member, shape),
            progress=progress,
            world=world,
        )
        members.append(result.network)
        results.append(result)
        best_epochs.append(result.best_epoch)
        epochs.extend(record.model_copy(update={"member": member}) for record in result.epochs)
    network: Network = members[0] if len(members) == 1 else Ensemble(shape, job.layout, members)
    windows_seen = min(len(origins["train"]), job.config.windows_per_epoch) * len(epochs)
    season = cadence(job.dataset.freq).season_length
    predictor = Predictor(network, scaling, job.device, covariates=job.covariates, season_length=season)
    replays = [result.replay(job.config.learning_rate) for result in results]
    return Fitted(predictor, epochs, best_epochs[0], windows_seen, replays=replays)


def _choose_anchors(job: PreparedJob, objective: Objective) -> NetworkConfig:
    """The anchor left open, chosen now that the scaling is fitted (forecast.training.anchor_choice):
    the network's, written into the job's config; the candidates to stand in for it alone are
    kept for the job to choose among if the network loses the gate."""
    shape = job.config.network
    candidates = anchor_candidates(job.dataset.freq, shape.input_size, shape.anchor)
    keep = functools.partial(fitting_origins, job)
    chosen = choose_network_anchor(shape, candidates, job.layout, job.evaluation, objective, job.config.seed, keep)
    job.stand_ins = stand_in_candidates(candidates, shape.input_size, job.dataset.median_history)
    shape = shape.model_copy(update={"anchor": chosen.kind, "anchor_period": chosen.period})
    job.config = job.config.model_copy(update={"network": shape})
    return shape


def fitting_origins(job: PreparedJob, origins: np.ndarray) -> np.ndarray:
    """The origins the network is fitted and validated on: those whose windows it reads when
    serving, not the ones too thin for it, which the predictor forecasts by the anchor alone
    (`forecast.model.missing.too_thin`)."""
    shape = job.config.network
    padding, observed = window_counts(job.store, origins, shape.input_size)
    season = cadence(job.dataset.freq).season_length
    kept = origins[~too_thin(padding, observed, shape.input_size, season)]
    # Data too short for any window the network reads still trains as it did before the rule (its
    # windows are served by the anchor alone): an empty set would leave nothing to fit.
    return kept if len(kept) else origins


def refit_network(job: PreparedJob, fitted: Fitted, world: World = SOLO) -> Network:
    """Every member fitted again on the whole history (its validation and test blocks too), each
    with its own fit's choices: what the version publishes, so its forecasts have seen the latest
    data, as the statistical models a user compares it with have."""
    shape = job.config.network
    objective = Objective.of(
        job.config.loss, fitted.predictor.scaling, job.evaluation.denominators["train"], job.covariates
    )
    replays = fitted.replays
    store = job.store
    everything = fitting_origins(
        job,
        origins_between(
            store, np.zeros_like(store.lengths), store.lengths, input_size=shape.input_size, horizon=shape.horizon
        ),
    )
    members = [
        refit(
            store,
            everything,
            job.layout,
            objective,
            job.config,
            job.device,
            replay,
            seed=job.config.seed + member,
            initial_state=_member_state(job.initial_state, member, shape),
            world=world,
        )
        for member, replay in enumerate(replays)
    ]
    return members[0] if len(members) == 1 else Ensemble(shape, job.layout, members)


def _member_state(
    state: dict[str, torch.Tensor] | None, member: int, shape: NetworkConfig
) -> dict[str, torch.Tensor] | None:
    """A member's warm start: the production version's weights (the same shape, `prepare` checked),
    or that member's part of them."""
    if state is None or (shape.ensemble or 1) == 1:
        return state
    return member_state(state, member)
