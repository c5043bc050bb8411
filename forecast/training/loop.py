"""The training loop: AdamW, gradient-norm clipping, a plateau learning-rate schedule and early
stopping on validation loss with the best weights restored. Seeded, so the same data and seed
give the same weights on the CPU."""

from __future__ import annotations

import copy
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from forecast.model.config import LossName, ScalingParams
from forecast.model.encoding import encode
from forecast.model.network import Forecaster
from forecast.model.scaling import to_scaled
from forecast.registry.manifest import EpochRecord, TrainingConfig
from forecast.series.windows import SeriesStore, gather, series_of_origins

logger = logging.getLogger(__name__)

_EVAL_BATCH = 4096
_MAX_VALIDATION_WINDOWS = 50_000


@dataclass(slots=True)
class FitResult:
    network: Forecaster
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@dataclass(slots=True)
class Objective:
    """What the loop minimises: a loss on scaled errors; for `mase`, the inverse of each series'
    in-sample seasonal MAE, which turns a window's scaled error into MASE units."""

    loss: LossName
    scaling: ScalingParams
    inverse_denominators: np.ndarray | None = None  # (S,) float64; NaN where a series has none

    @classmethod
    def of(cls, loss: LossName, scaling: ScalingParams, denominators: np.ndarray) -> Objective:
        usable = np.isfinite(denominators) & (denominators > 0)
        inverse = np.divide(1.0, denominators, out=np.full(len(denominators), np.nan), where=usable)
        return cls(loss, scaling, inverse if loss == "mase" else None)

    def weights(self, store: SeriesStore, origins: np.ndarray, spread: torch.Tensor) -> torch.Tensor | None:
        """(B, 1) each window's scale over its series' denominator; 1 (the scaled error) for a
        series without a denominator (a constant history)."""
        if self.inverse_denominators is None:
            return None
        inverse = torch.from_numpy(self.inverse_denominators[series_of_origins(store, origins)][:, None]).to(spread)
        return torch.nan_to_num(spread * inverse, nan=1.0)


def _batch_loss(network: Forecaster, store: SeriesStore, origins: np.ndarray, objective: Objective) -> torch.Tensor:
    config = network.config
    batch = gather(store, origins, input_size=config.input_size, horizon=config.horizon)
    encoded = encode(batch.history, batch.features, objective.scaling)
    target = to_scaled(batch.target, encoded.loc, encoded.spread)  # (B, H)
    return network.loss(encoded.inputs, target, objective.loss, objective.weights(store, origins, encoded.spread))


def validation_loss(network: Forecaster, store: SeriesStore, origins: np.ndarray, objective: Objective) -> float:
    network.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(origins), _EVAL_BATCH):
            chunk = origins[start : start + _EVAL_BATCH]
            total += float(_batch_loss(network, store, chunk, objective)) * len(chunk)
            count += len(chunk)
    return total / max(count, 1)


def _on_device(store: SeriesStore, device: torch.device) -> SeriesStore:
    return SeriesStore(
        values=store.values.to(device),
        features=store.features.to(device),
        offsets=store.offsets,
        series_ids=store.series_ids,
    )


def _train_epoch(
    network: Forecaster,
    optimizer: torch.optim.Optimizer,
    store: SeriesStore,
    train_origins: np.ndarray,
    objective: Objective,
    config: TrainingConfig,
    rng: np.random.Generator,
) -> float:
    """One pass over a fresh sample of at most `windows_per_epoch` windows; the mean loss."""
    network.train()
    order = rng.permutation(len(train_origins))[: config.windows_per_epoch]
    losses = []
    for start in range(0, len(order), config.batch_size):
        chunk = train_origins[order[start : start + config.batch_size]]
        loss = _batch_loss(network, store, chunk, objective)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), config.clip_norm)  # exploding gradients
        optimizer.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


def _initial_network(
    config: TrainingConfig, input_channels: int, initial_state: dict[str, torch.Tensor] | None
) -> Forecaster:
    """A fresh forecaster (its anchor, since the head starts at zero), or a warm start."""
    network = Forecaster(config.network, input_channels)
    if initial_state is not None:
        network.load_state_dict(initial_state)
    return network


def fit(
    store: SeriesStore,
    train_origins: np.ndarray,
    validation_origins: np.ndarray,
    input_channels: int,
    objective: Objective,
    config: TrainingConfig,
    device: torch.device,
    *,
    seed: int | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
) -> FitResult:
    """One forecaster fitted on the training origins; `seed` defaults to the config's (an
    ensemble's members each get their own)."""
    rng = seed_everything(config.seed if seed is None else seed)
    network = _initial_network(config, input_channels, initial_state).to(device)
    device_store = _on_device(store, device)
    if len(validation_origins) > _MAX_VALIDATION_WINDOWS:  # a fixed subset keeps epochs comparable
        validation_origins = np.sort(rng.choice(validation_origins, _MAX_VALIDATION_WINDOWS, replace=False))
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 2))
    result = FitResult(network=network)
    best_loss = validation_loss(network, device_store, validation_origins, objective)  # untrained: the anchor
    best_state = copy.deepcopy(network.state_dict())
    epochs = tqdm(range(1, config.max_epochs + 1), desc="training", unit="epoch", file=sys.stderr, disable=not progress)
    for epoch in epochs:
        started = time.perf_counter()
        train_loss = _train_epoch(network, optimizer, device_store, train_origins, objective, config, rng)
        val_loss = validation_loss(network, device_store, validation_origins, objective)
        schedule.step(val_loss)
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            learning_rate=float(optimizer.param_groups[0]["lr"]),
            seconds=time.perf_counter() - started,
        )
        result.epochs.append(record)
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
