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

from forecast.model.config import ScalingParams
from forecast.model.encoding import encode
from forecast.model.network import Forecaster
from forecast.model.scaling import to_scaled
from forecast.registry.manifest import EpochRecord, TrainingConfig
from forecast.series.windows import SeriesStore, gather

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


def _batch_loss(network: Forecaster, store: SeriesStore, origins: np.ndarray, scaling: ScalingParams) -> torch.Tensor:
    config = network.config
    batch = gather(store, origins, input_size=config.input_size, horizon=config.horizon)
    encoded = encode(batch.history, batch.features, scaling)
    target = to_scaled(batch.target, encoded.loc, encoded.spread)  # (B, H)
    return network.loss(encoded.inputs, target)


def validation_loss(network: Forecaster, store: SeriesStore, origins: np.ndarray, scaling: ScalingParams) -> float:
    network.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(origins), _EVAL_BATCH):
            chunk = origins[start : start + _EVAL_BATCH]
            total += float(_batch_loss(network, store, chunk, scaling)) * len(chunk)
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
    scaling: ScalingParams,
    config: TrainingConfig,
    rng: np.random.Generator,
) -> float:
    """One pass over a fresh sample of at most `windows_per_epoch` windows; the mean loss."""
    network.train()
    order = rng.permutation(len(train_origins))[: config.windows_per_epoch]
    losses = []
    for start in range(0, len(order), config.batch_size):
        chunk = train_origins[order[start : start + config.batch_size]]
        loss = _batch_loss(network, store, chunk, scaling)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), config.clip_norm)  # exploding gradients
        optimizer.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


def fit(
    store: SeriesStore,
    train_origins: np.ndarray,
    validation_origins: np.ndarray,
    input_channels: int,
    scaling: ScalingParams,
    config: TrainingConfig,
    device: torch.device,
    *,
    initial_state: dict[str, torch.Tensor] | None = None,
    progress: bool = True,
) -> FitResult:
    rng = seed_everything(config.seed)
    network = Forecaster(config.network, input_channels)
    if initial_state is not None:
        network.load_state_dict(initial_state)
    network.to(device)
    device_store = _on_device(store, device)
    if len(validation_origins) > _MAX_VALIDATION_WINDOWS:  # a fixed subset keeps epochs comparable
        validation_origins = np.sort(rng.choice(validation_origins, _MAX_VALIDATION_WINDOWS, replace=False))
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 2))
    result = FitResult(network=network)
    best_loss = validation_loss(network, device_store, validation_origins, scaling)  # the untrained net is naive
    best_state = copy.deepcopy(network.state_dict())
    epochs = tqdm(range(1, config.max_epochs + 1), desc="training", unit="epoch", file=sys.stderr, disable=not progress)
    for epoch in epochs:
        started = time.perf_counter()
        train_loss = _train_epoch(network, optimizer, device_store, train_origins, scaling, config, rng)
        val_loss = validation_loss(network, device_store, validation_origins, scaling)
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
