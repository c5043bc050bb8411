"""The linear skip solved in closed form before the first epoch (forecast.training.linear)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.network import Forecaster
from forecast.model.scaling import fit_scaling
from forecast.series.covariates import CovariateColumns
from forecast.series.dataset import load_dataset
from forecast.series.windows import SeriesStore, block_origins, build_store, split_blocks, training_parts
from forecast.training.covariates import fit_covariates, static_rows
from forecast.training.linear import accumulate, fit_linear
from forecast.training.loop import Objective, validation_loss
from tests.factories import TEMPERATURE_EFFECT, covariate_frame
from tests.support.stores import HORIZON, INPUT, network_and_origins, seasonal_store


def solve(store: SeriesStore, network: Forecaster, train: np.ndarray, validation: np.ndarray, best_loss: float | None):
    """The anchor's validation loss, and the one the solved skip leaves (`best_loss` the one to beat)."""
    objective = Objective.of("mae", ScalingParams(mode="window"), np.ones(3))
    anchor_loss = validation_loss(network, store, validation, objective)
    to_beat = anchor_loss if best_loss is None else best_loss
    return anchor_loss, fit_skip(network, store, objective, train, validation, to_beat)


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


def covariate_job(
    tmp_path: Path, kinds: CovariateColumns
) -> tuple[Forecaster, SeriesStore, Objective, np.ndarray, np.ndarray]:
    """covariate_frame's series with the named covariates, a network that reads them and the
    horizon's inputs (naive anchor, global scaling), its training and validation origins."""
    path = tmp_path / "data.csv"
    covariate_frame(n_points=600).to_csv(path, index=False)
    dataset = load_dataset(path, covariates=kinds)
    store = build_store(dataset, ["hour_of_day"])
    blocks = split_blocks(store, input_size=INPUT, horizon=HORIZON, val_size=96, test_size=48)
    covariates = fit_covariates(dataset, store, blocks)
    store.static = static_rows(dataset, covariates)
    training = np.concatenate(training_parts(store.values.numpy().astype(np.float64), store, blocks))
    objective = Objective.of("mse", fit_scaling("global", "standard", training), np.ones(2), covariates)
    config = NetworkConfig(
        arch="lstm", input_size=INPUT, horizon=HORIZON, hidden_size=8, anchor_period=1, horizon_inputs=True
    )
    train, validation = (
        block_origins(store, blocks, b, input_size=INPUT, horizon=HORIZON) for b in ("train", "validation")
    )
    return Forecaster(config, covariates.layout(2)), store, objective, train, validation


def fit_skip(
    network: Forecaster,
    store: SeriesStore,
    objective: Objective,
    train: np.ndarray,
    validation: np.ndarray,
    best_loss: float | None = None,
) -> float:
    """The skip solved on the training origins, the candidate kept by validation (none that does
    not beat `best_loss`, by default the anchor's); the validation loss it leaves."""
    linear = network.linear_part()
    assert linear is not None
    equations = accumulate(
        linear,
        store,
        train,
        lambda origins, spread: None,
        network=network.config,
        scaling=objective.scaling,
        covariates=objective.covariates,
        rng=np.random.default_rng(0),
    )

    def loss() -> float:
        return validation_loss(network, store, validation, objective)

    return fit_linear(linear, equations, loss, loss() if best_loss is None else best_loss)[0]


def test_the_solved_skip_recovers_a_future_covariates_linear_effect(tmp_path: Path) -> None:
    """The target moves TEMPERATURE_EFFECT units per unit of temperature at the same step, which
    the past cannot predict: the skip's weight on step h's temperature is that effect (in the
    scaled units both are standardised in) at every step, and its weight on the temperature of the
    step the (naive) anchor repeats takes that step's effect out again; the skip forecasts far
    better than the same skip without the covariate."""
    kinds = CovariateColumns(future=["temperature"], static=["region"])
    network, store, objective, train, validation = covariate_job(tmp_path, kinds)
    with_covariates = fit_skip(network, store, objective, train, validation)
    assert network.horizon_skip is not None
    temperature = objective.covariates.future[0]
    expected = TEMPERATURE_EFFECT * temperature.scale / objective.scaling.scale
    width = network.layout.known_width  # the step's inputs, then theirs at the anchor's step
    at_step = network.horizon_skip.weight[:, width - 1].detach()  # (H,): temperature is the last known input
    at_anchor = network.horizon_skip.weight[:, -1].detach()
    torch.testing.assert_close(at_step, torch.full_like(at_step, expected), rtol=0.03, atol=0.0)
    # The window's values carry that step's temperature too, and take a little of its weight.
    torch.testing.assert_close(at_anchor, torch.full_like(at_anchor, -expected), rtol=0.1, atol=0.0)

    plain, plain_store, plain_objective, *_ = covariate_job(tmp_path, CovariateColumns())
    without = fit_skip(plain, plain_store, plain_objective, train, validation)
    assert with_covariates < 0.2 * without


def test_a_covariate_that_does_not_help_is_left_out_of_the_skip(tmp_path: Path) -> None:
    """Noise posing as a covariate: the candidate without covariates wins on validation, so every
    covariate weight of the skip is zero."""
    path = tmp_path / "data.csv"
    frame = covariate_frame(n_points=600)
    frame["noise"] = np.random.default_rng(1).normal(size=len(frame))
    frame.drop(columns=["temperature"]).rename(columns={"noise": "temperature"}).to_csv(path, index=False)
    dataset = load_dataset(path, covariates=CovariateColumns(past=["temperature"]))
    store = build_store(dataset, [])
    blocks = split_blocks(store, input_size=INPUT, horizon=HORIZON, val_size=96, test_size=48)
    covariates = fit_covariates(dataset, store, blocks)
    objective = Objective.of("mse", ScalingParams(mode="window"), np.ones(2), covariates)
    config = NetworkConfig(arch="lstm", input_size=INPUT, horizon=HORIZON, hidden_size=8, anchor_period=24)
    network = Forecaster(config, covariates.layout(0))
    train, validation = (
        block_origins(store, blocks, b, input_size=INPUT, horizon=HORIZON) for b in ("train", "validation")
    )
    fit_skip(network, store, objective, train, validation)
    assert network.skip is not None
    assert torch.count_nonzero(network.skip.weight[:, INPUT:]) == 0  # the covariate's window
    assert torch.count_nonzero(network.skip.weight[:, :INPUT]) > 0
