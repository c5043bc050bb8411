"""The linear skip solved in closed form before the first epoch (forecast.training.linear)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.network import Forecaster
from forecast.series.dataset import Dataset, Series
from forecast.series.windows import SeriesStore, block_origins, build_store, split_blocks
from forecast.training.linear import accumulate, fit_linear
from forecast.training.loop import Objective, validation_loss

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
    return Forecaster(config, input_channels=1), train, validation


def solve(store: SeriesStore, network: Forecaster, train: np.ndarray, validation: np.ndarray, best_loss: float | None):
    objective = Objective.of("mae", ScalingParams(mode="window"), np.ones(3))
    linear = network.linear_part()
    assert linear is not None
    equations = accumulate(
        linear, store, train, lambda origins, spread: None, input_size=INPUT, horizon=HORIZON,
        scaling=objective.scaling, rng=np.random.default_rng(0),
    )  # fmt: skip

    def loss() -> float:
        return validation_loss(network, store, validation, objective)

    anchor_loss = loss()
    return anchor_loss, fit_linear(linear, equations, loss, anchor_loss if best_loss is None else best_loss)


def test_the_solved_skip_finds_what_the_naive_anchor_misses() -> None:
    """The naive anchor is far off a daily cycle; the skip, solved before any gradient step, turns
    the forecast into the cycle's continuation, and the forecaster (head still zero) forecasts it."""
    store = seasonal_store()
    network, train, validation = network_and_origins(store)

    anchor_loss, solved_loss = solve(store, network, train, validation, None)

    assert anchor_loss > 0.3
    assert solved_loss < 0.02 * anchor_loss
    assert validation_loss(
        network, store, validation, Objective.of("mae", ScalingParams(mode="window"), np.ones(3))
    ) == pytest.approx(solved_loss)
    assert torch.count_nonzero(network.head.weight) == 0  # only the skip moved


def test_a_skip_that_beats_nothing_is_left_at_zero() -> None:
    """When no penalty beats the loss to beat (here: zero, unbeatable), the skip stays at zero and
    the network stays its anchor."""
    store = seasonal_store()
    network, train, validation = network_and_origins(store)

    _, kept_loss = solve(store, network, train, validation, 0.0)

    assert kept_loss == 0.0
    assert network.skip is not None
    assert torch.count_nonzero(network.skip.weight) == 0 and torch.count_nonzero(network.skip.bias) == 0
