"""The training loop: AdamW, gradient-norm clipping, a plateau learning-rate schedule and early
stopping on validation loss with the best weights restored. Seeded, so the same data and seed
give the same weights on the CPU.

Under torchrun (`forecast.training.distributed`) every rank runs this loop: each takes its share
of every batch and DDP averages the gradients, each validates its share of the validation windows
and the losses are summed, and every rank follows rank 0's validation loss, so the schedule, the
best epoch and the early stop agree on all of them. Same seed and world size, same weights."""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from forecast.config.training import EpochRecord, TrainingConfig
from forecast.model.config import InputLayout, LossName, NetworkConfig, ScalingParams
from forecast.model.covariates import NO_COVARIATES, Covariates
from forecast.model.encoding import Encoded, encode
from forecast.model.network import SERIES_SCALED_LOSSES, Forecaster, forecast_loss
from forecast.model.scaling import to_scaled
from forecast.model.skip import LinearPart
from forecast.series.windows import SeriesStore, series_of_origins
from forecast.training.batches import gather_windows
from forecast.training.distributed import SOLO, World
from forecast.training.linear import NormalEquations, SkipChoice, accumulate, fit_linear, solve_linear

logger = logging.getLogger(__name__)

_EVAL_BATCH = 4096
_MAX_VALIDATION_WINDOWS = 50_000
_SKIP_LEARNING_RATE_FACTOR = 0.1


@dataclass(slots=True)
class FitResult:
    network: Forecaster
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    skip: SkipChoice | None = None  # the ridge solve validation kept (None: none, or not solved)

    def replay(self, initial_learning_rate: float) -> Replay:
        """What a refit repeats: the skip's solve, and the learning rate of each epoch up to the
        best one (each record holds the rate the schedule set after its epoch, for the next)."""
        rates = [initial_learning_rate, *(record.learning_rate for record in self.epochs)][: self.best_epoch]
        return Replay(self.skip, rates)


@dataclass(frozen=True, slots=True)
class Replay:
    """A fit's choices, repeated on the whole history by `refit`."""

    skip: SkipChoice | None
    learning_rates: list[float]  # one per epoch to run


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@dataclass(slots=True)
class Objective:
    """What the loop minimises: a loss on scaled errors; for `mase` and `msse`, the inverse of each
    series' in-sample seasonal MAE, which turns a window's scaled error into MASE units. The
    scaling and the covariates' standardisation say how windows become the network's inputs."""

    loss: LossName
    scaling: ScalingParams
    inverse_denominators: np.ndarray | None = None  # (S,) float64; NaN where a series has none
    covariates: Covariates = NO_COVARIATES

    @classmethod
    def of(
        cls, loss: LossName, scaling: ScalingParams, denominators: np.ndarray, covariates: Covariates = NO_COVARIATES
    ) -> Objective:
        usable = np.isfinite(denominators) & (denominators > 0)
        inverse = np.divide(1.0, denominators, out=np.full(len(denominators), np.nan), where=usable)
        return cls(loss, scaling, inverse if loss in SERIES_SCALED_LOSSES else None, covariates)

    def weights(self, store: SeriesStore, origins: np.ndarray, spread: torch.Tensor) -> torch.Tensor | None:
        """(B, 1) each window's scale over its series' denominator; 1 (the scaled error) for a
        series without a denominator (a constant history)."""
        if self.inverse_denominators is None:
            return None
        inverse = torch.from_numpy(self.inverse_denominators[series_of_origins(store, origins)][:, None]).to(spread)
        return torch.nan_to_num(spread * inverse, nan=1.0)


# How a batch's encoded windows become forecasts: the network (or DDP's wrapper of it) by default.
Forecasting = Callable[[Encoded], torch.Tensor]


def _batch_loss(
    model: nn.Module,
    config: NetworkConfig,
    store: SeriesStore,
    origins: np.ndarray,
    objective: Objective,
    forecasting: Forecasting | None = None,
) -> torch.Tensor:
    """The loss of the windows at `origins`, through `model`: the forecaster, or DDP's wrapper of it
    (only a forward through the wrapper has the backward average the gradients over the ranks),
    or through `forecasting` where given."""
    batch = gather_windows(store, origins, config)
    encoded = encode(batch.windows, objective.scaling, objective.covariates, gaps=config.gap_rule)
    target = to_scaled(batch.target, encoded.loc, encoded.spread)  # (B, H); NaN where missing
    forecast = (
        forecasting(encoded) if forecasting is not None else model(encoded.inputs, encoded.known, encoded.static)
    )  # (B, H)
    return forecast_loss(forecast, target, objective.loss, objective.weights(store, origins, encoded.spread))


def validation_loss(
    network: Forecaster,
    store: SeriesStore,
    origins: np.ndarray,
    objective: Objective,
    world: World = SOLO,
    forecasting: Forecasting | None = None,
) -> float:
    """The mean loss over `origins` (of `forecasting`, where given, instead of the network's
    forward); distributed, each rank takes its share and the sums are all-reduced, so every rank
    gets the loss over all of them."""
    network.eval()
    total, count = 0.0, 0
    shard = world.share(origins)
    with torch.inference_mode():  # the bare network: no collective per chunk, whose count differs by rank
        for start in range(0, len(shard), _EVAL_BATCH):
            chunk = shard[start : start + _EVAL_BATCH]
            total += float(_batch_loss(network, network.config, store, chunk, objective, forecasting)) * len(chunk)
            count += len(chunk)
    everywhere_total, everywhere_count = world.sum(total, count)
    return everywhere_total / max(everywhere_count, 1)


def _on_device(store: SeriesStore, device: torch.device) -> SeriesStore:
    return replace(
        store,
        values=store.values.to(device),
        features=store.features.to(device),
        past=store.past.to(device),
        future=store.future.to(device),
        static=store.static.to(device),
    )


def _train_epoch(
    network: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    store: SeriesStore,
    train_origins: np.ndarray,
    objective: Objective,
    config: TrainingConfig,
    rng: np.random.Generator,
    world: World = SOLO,
) -> float:
    """One pass over a fresh sample of at most `windows_per_epoch` windows; the mean batch loss.

    Distributed, every rank draws the same sample (the same seed) and takes its share of each batch:
    the batches and the number of steps are the single process's, and `batch_size` stays the size
    of the whole batch, whatever the number of processes."""
    network.train()
    order = rng.permutation(len(train_origins))[: config.windows_per_epoch]
    losses = []  # each batch's mean loss (distributed: this rank's part of it)
    for start in range(0, len(order), config.batch_size):
        batch = order[start : start + config.batch_size]
        if len(batch) < world.size:  # a last batch too small to give every rank a window (never in one process)
            continue
        share = world.share(batch)
        loss = _batch_loss(model, config.network, store, train_origins[share], objective)
        optimizer.zero_grad(set_to_none=True)
        if world.distributed:
            # DDP averages the ranks' gradients; weighting each rank's mean by its part of the batch
            # makes that average the gradient of the whole batch's mean loss, as in one process.
            fraction = len(share) / len(batch)
            (loss * (fraction * world.size)).backward()
            losses.append(float(loss.detach()) * fraction)
        else:
            loss.backward()
            losses.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(network.parameters(), config.clip_norm)  # exploding gradients
        optimizer.step()
    if not world.distributed:
        return float(np.mean(losses))
    (total,) = world.sum(float(np.sum(losses)))  # every rank ran the same number of batches
    return total / len(losses)


def _initial_network(
    config: TrainingConfig, layout: InputLayout, initial_state: dict[str, torch.Tensor] | None
) -> Forecaster:
    """A fresh forecaster (its anchor, since the head starts at zero), or a warm start."""
    network = Forecaster(config.network, layout)
    if initial_state is not None:
        network.load_state_dict(initial_state)
    return network


def _validation_subset(origins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At most _MAX_VALIDATION_WINDOWS origins, one fixed subset: epochs stay comparable."""
    if len(origins) <= _MAX_VALIDATION_WINDOWS:
        return origins
    return np.sort(rng.choice(origins, _MAX_VALIDATION_WINDOWS, replace=False))


def _optimizer(
    network: Forecaster, config: TrainingConfig
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """AdamW with the linear skip at a tenth of the learning rate: it starts solved (by ridge
    regression), and at the full rate the first epoch's steps undo that before the encoder has
    learnt anything (on M4 Hourly, one LSTM: OWA 0.524 at the full rate, 0.510 at a tenth, 0.539
    with the skip frozen)."""
    skip = network.linear_parameters()
    solved = {id(parameter) for parameter in skip}
    rest = [parameter for parameter in network.parameters() if id(parameter) not in solved]
    groups: list[dict[str, Any]] = [
        {"params": rest},
        {"params": skip, "lr": config.learning_rate * _SKIP_LEARNING_RATE_FACTOR},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 2))
    return optimizer, schedule


def _epoch_record(
    epoch: int, train_loss: float, val_loss: float, optimizer: torch.optim.Optimizer, started: float
) -> EpochRecord:
    learning_rate = float(optimizer.param_groups[0]["lr"])
    seconds = time.perf_counter() - started
    return EpochRecord(
        epoch=epoch, train_loss=train_loss, val_loss=val_loss, learning_rate=learning_rate, seconds=seconds
    )


def linear_equations(
    network: Forecaster, store: SeriesStore, train_origins: np.ndarray, objective: Objective, rng: np.random.Generator
) -> tuple[LinearPart, NormalEquations]:
    """The network's anchor and skip, and the ridge regression's sums over the training windows."""
    linear = network.linear_part()
    assert linear is not None
    return linear, accumulate(
        linear,
        store,
        train_origins,
        lambda chosen, spread: objective.weights(store, chosen, spread),
        network=network.config,
        scaling=objective.scaling,
        covariates=objective.covariates,
        rng=rng,
    )


def _fit_linear_skip(
    network: Forecaster,
    store: SeriesStore,
    origins: tuple[np.ndarray, np.ndarray],
    objective: Objective,
    rng: np.random.Generator,
    world: World,
    best_loss: float,
) -> tuple[float, SkipChoice | None]:
    """The skip of a fresh network solved by ridge regression (forecast.training.linear); the
    validation loss it leaves and the solve kept; nothing to do without a skip."""
    if network.linear_part() is None:
        return best_loss, None
    train_origins, validation_origins = origins
    linear, equations = linear_equations(network, store, train_origins, objective, rng)

    def loss() -> float:
        return world.from_main(validation_loss(network, store, validation_origins, objective, world))

    return fit_linear(linear, equations, loss, best_loss)


@dataclass(frozen=True, slots=True)
class FitData:
    """What a fit trains and validates on: the series, the origins of each block's windows,
    their input layout and the objective that scores them."""

    store: SeriesStore
    train_origins: np.ndarray
    validation_origins: np.ndarray
    layout: InputLayout
    objective: Objective


def fit(
    data: FitData,
    config: TrainingConfig,
    device: torch.device,
    *,
    seed: int | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
    world: World = SOLO,
) -> FitResult:
    """One forecaster fitted on the training origins; `seed` defaults to the config's (an
    ensemble's members each get their own). Every rank of `world` calls it with the same arguments.
    A fresh network's skip is solved first, in closed form; the epochs then train everything from
    there, and keep that start unless they beat it on validation, as the zero head keeps the anchor."""
    store, train_origins, validation_origins = data.store, data.train_origins, data.validation_origins
    layout, objective = data.layout, data.objective
    rng = seed_everything(config.seed if seed is None else seed)
    network = _initial_network(config, layout, initial_state).to(device)
    model = world.wrap(network, device)  # DDP also broadcasts rank 0's initial weights
    device_store = _on_device(store, device)
    validation_origins = _validation_subset(validation_origins, rng)
    optimizer, schedule = _optimizer(network, config)
    result = FitResult(network=network)
    # Untrained, the network is its anchor baseline: the loss to beat.
    best_loss = world.from_main(validation_loss(network, device_store, validation_origins, objective, world))
    if initial_state is None and config.solve_skip:  # a warm start's skip is already fitted
        best_loss, result.skip = _fit_linear_skip(
            network, device_store, (train_origins, validation_origins), objective, rng, world, best_loss
        )
    best_state = copy.deepcopy(network.state_dict())
    epochs = tqdm(range(1, config.max_epochs + 1), desc="training", unit="epoch", file=sys.stderr, disable=not progress)
    for epoch in epochs:
        started = time.perf_counter()
        train_loss = _train_epoch(network, model, optimizer, device_store, train_origins, objective, config, rng, world)
        # Rank 0's loss on every rank: the schedule, the best epoch and the stop below agree everywhere.
        val_loss = world.from_main(validation_loss(network, device_store, validation_origins, objective, world))
        schedule.step(val_loss)
        result.epochs.append(_epoch_record(epoch, train_loss, val_loss, optimizer, started))
        epochs.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}")
        if val_loss < best_loss:
            best_loss, result.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(network.state_dict())
        elif epoch - result.best_epoch >= config.patience:
            logger.info("early stop at epoch %d; best epoch %d", epoch, result.best_epoch)
            break
    network.load_state_dict(best_state)
    network.eval()
    return result


def refit(
    store: SeriesStore,
    train_origins: np.ndarray,
    layout: InputLayout,
    objective: Objective,
    config: TrainingConfig,
    device: torch.device,
    replay: Replay,
    *,
    seed: int,
    initial_state: dict[str, torch.Tensor] | None = None,
    world: World = SOLO,
) -> Forecaster:
    """A forecaster fitted again on `train_origins` (the whole history) with the choices a fit made
    on less of it: the same seed, the skip's solve, and the epochs up to the best one at the
    learning rates the schedule set then. Nothing is validated: the fit already chose."""
    rng = seed_everything(seed)
    network = _initial_network(config, layout, initial_state).to(device)
    model = world.wrap(network, device)
    device_store = _on_device(store, device)
    optimizer, _ = _optimizer(network, config)
    if initial_state is None and config.solve_skip and network.linear_part() is not None:
        linear, equations = linear_equations(network, device_store, train_origins, objective, rng)
        solve_linear(linear, equations, replay.skip)
    for rate in replay.learning_rates:
        optimizer.param_groups[0]["lr"] = rate
        optimizer.param_groups[1]["lr"] = rate * _SKIP_LEARNING_RATE_FACTOR
        _train_epoch(network, model, optimizer, device_store, train_origins, objective, config, rng, world)
    network.eval()
    return network
