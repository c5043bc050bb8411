"""Training windows as the model reads them: a batch gathered from the store (the series layer's
index arithmetic) handed over as the model layer's `RawWindows`, with the horizon's future-known
inputs when the network reads them. The loop, the ridge solve and the evaluation all gather here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forecast.model.config import NetworkConfig
from forecast.model.encoding import RawWindows
from forecast.series.windows import SeriesStore, gather


@dataclass(slots=True)
class TrainingBatch:
    windows: RawWindows
    target: torch.Tensor  # (B, H) raw values to forecast


def known_steps(network: NetworkConfig) -> int:
    """Steps after the window whose future-known inputs the network reads: the horizon, or none."""
    return network.horizon if network.horizon_inputs else 0


def gather_windows(store: SeriesStore, origins: np.ndarray | torch.Tensor, network: NetworkConfig) -> TrainingBatch:
    batch = gather(
        store, origins, input_size=network.input_size, horizon=network.horizon, known_steps=known_steps(network)
    )
    return TrainingBatch(
        windows=RawWindows(
            history=batch.history, calendar=batch.features, past=batch.past, future=batch.future, static=batch.static
        ),
        target=batch.target,
    )
