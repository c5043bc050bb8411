"""The refit after evaluation (forecast.training.loop.refit): it repeats the fit's choices exactly,
so on more data it is the same procedure, and the version publishes it while its manifest keeps
the evaluated accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from forecast.config.training import TrainingConfig
from forecast.model.config import ScalingParams
from forecast.registry.store import Registry
from forecast.registry.weights import load_predictor
from forecast.training.job import run_training
from forecast.training.loop import FitData, Objective, fit, refit
from tests.support.stores import HORIZON, INPUT, network_and_origins, seasonal_store


def _noisy_store():  # type: ignore[no-untyped-def]
    store = seasonal_store(length=400)
    store.values = store.values + 0.3 * torch.randn(store.values.shape, generator=torch.Generator().manual_seed(0))
    return store


def test_a_refit_on_the_same_windows_is_the_fit() -> None:
    """Same seed, the skip's solve and each epoch's learning rate up to the best one: given the
    fit's own training windows, the refit's weights are the fit's, bit for bit."""
    store = _noisy_store()
    network, train, validation = network_and_origins(store)
    config = TrainingConfig.model_validate(
        {"network": network.config, "max_epochs": 6, "patience": 6, "learning_rate": 1e-2, "device": "cpu"}
    )
    objective = Objective.of("mae", ScalingParams(mode="window"), np.ones(3))
    data = FitData(store, train, validation, network.layout, objective)
    fitted = fit(data, config, torch.device("cpu"), progress=False)
    assert fitted.best_epoch > 0, "the epochs improved on the solved skip"
    replay = fitted.replay(config.learning_rate)
    assert len(replay.learning_rates) == fitted.best_epoch
    again = refit(store, train, network.layout, objective, config, torch.device("cpu"), replay, seed=config.seed)
    for name, tensor in fitted.network.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_the_version_publishes_the_refit_and_keeps_the_evaluated_metrics(tmp_path: Path) -> None:
    """With the refit (the default) and without it, one job's evaluation is the same; the refit
    version's weights have seen the validation and test blocks and differ."""
    steps = np.arange(500)
    rng = np.random.default_rng(1)
    frame = pd.concat(
        pd.DataFrame(
            {
                "series_id": f"s{k}",
                "timestamp": pd.date_range("2024-01-01", periods=500, freq="h"),
                "value": 20 + 5 * np.sin(2 * np.pi * steps / 24 + k) + rng.normal(0, 0.5, 500).cumsum() * 0.2,
            }
        )
        for k in range(3)
    )
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    registry = Registry(tmp_path / "registry")
    settings = {
        "arch": "gru",
        "input_size": INPUT,
        "horizon": HORIZON,
        "hidden_size": 8,
        "ensemble": 1,
        "max_epochs": 3,
        "device": "cpu",
    }
    published = run_training(data, "refit", TrainingConfig.model_validate(settings), registry, progress=False)
    evaluated = run_training(
        data, "evaluated", TrainingConfig.model_validate({**settings, "refit": False}), registry, progress=False
    )
    assert published.manifest.training.refit and not evaluated.manifest.training.refit
    assert published.manifest.metrics == evaluated.manifest.metrics
    assert "refit_s" in published.manifest.timings
    weights = {
        name: load_predictor(registry, name, 1, torch.device("cpu")).predictor.network.state_dict()
        for name in ("refit", "evaluated")
    }
    assert any(not torch.equal(weights["refit"][key], weights["evaluated"][key]) for key in weights["refit"])
