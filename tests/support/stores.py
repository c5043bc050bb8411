"""Series stores built in memory for the training loop's tests: noise-free seasonal series
whose continuation is an exact linear function of the window, and a small network with its
training and validation origins."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecast.model.config import NetworkConfig
from forecast.model.network import Forecaster
from forecast.series.dataset import Dataset, Series
from forecast.series.windows import SeriesStore, block_origins, build_store, split_blocks

INPUT, HORIZON = 48, 12


def seasonal_store(series_count: int = 3, length: int = 600) -> SeriesStore:
    """Daily cycles of different sizes and phases, noise-free: each window's continuation is an
    exact linear function of the window (the value a day back)."""
    series = []
    for index in range(series_count):
        steps = np.arange(length)
        values = 10.0 * (index + 1) + (index + 2) * np.sin(2 * np.pi * (steps + 5 * index) / 24)
        stamps = pd.date_range("2024-01-01", periods=length, freq="h")
        series.append(Series(series_id=f"s{index}", timestamps=stamps, values=values))
    return build_store(Dataset(series=series, freq="h", source="test"), [])


def network_and_origins(store: SeriesStore) -> tuple[Forecaster, np.ndarray, np.ndarray]:
    config = NetworkConfig(arch="lstm", input_size=INPUT, horizon=HORIZON, hidden_size=8, anchor_period=1)
    blocks = split_blocks(store, input_size=INPUT, horizon=HORIZON, val_size=48, test_size=48)
    train, validation = (
        block_origins(store, blocks, b, input_size=INPUT, horizon=HORIZON) for b in ("train", "validation")
    )
    return Forecaster(config, 1), train, validation
