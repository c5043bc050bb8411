"""GPU checks, run by bench/gpu_check.py on a machine with CUDA (deselected elsewhere by the
`gpu` marker: they need a device that CI does not have)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.encoding import RawWindows
from forecast.model.network import Forecaster
from forecast.model.predictor import Predictor
from forecast.serving.pipeline import network_forward
from forecast.serving.requests import Window

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    assert torch.cuda.is_available(), "these tests need a CUDA device (run them through bench/gpu_check.py)"
    return torch.device("cuda")


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
def test_cuda_forecasts_equal_cpu_forecasts(cuda: torch.device, arch: str) -> None:
    torch.manual_seed(0)
    config = NetworkConfig(arch=arch, input_size=48, horizon=12, hidden_size=32, num_layers=2)
    network = Forecaster(config, 5)
    for parameter in network.parameters():  # leave the zero-initialised naive start behind
        torch.nn.init.normal_(parameter, std=0.1)
    history = torch.randn(64, 48).add_(20.0)
    features = torch.randn(64, 48, 4)
    on_cpu = Predictor(network, ScalingParams(mode="window"), torch.device("cpu")).predict(
        RawWindows.without_covariates(history, features)
    )
    on_gpu = Predictor(Forecaster(config, 5).to(cuda), ScalingParams(mode="window"), cuda)
    on_gpu.network.load_state_dict(network.state_dict())
    gpu_prediction = on_gpu.predict(RawWindows.without_covariates(history, features))
    np.testing.assert_allclose(gpu_prediction.mean, on_cpu.mean, rtol=1e-4, atol=1e-4)


def test_network_forward_uses_pinned_copies_and_returns_one_output_per_series(cuda: torch.device) -> None:
    config = NetworkConfig(arch="lstm", input_size=24, horizon=6)
    predictor = Predictor(Forecaster(config, 3), ScalingParams(mode="window"), cuda)
    inputs = [
        Window(history=np.full(24, float(i), dtype=np.float32), features=np.zeros((24, 2), dtype=np.float32))
        for i in range(10)
    ]
    outputs = network_forward(None, lambda: predictor)(inputs)  # type: ignore[arg-type]
    assert len(outputs) == 10
    # An untrained forecaster is the naive forecast: each series gets its own last value back.
    for i, output in enumerate(outputs):
        np.testing.assert_allclose(output.mean, np.full(6, float(i)), atol=1e-5)


def test_training_runs_on_cuda(cuda: torch.device, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from forecast.config.training import TrainingConfig
    from forecast.registry.store import Registry
    from forecast.training.job import run_training

    steps = np.arange(600)
    frame = pd.DataFrame(
        {
            "series_id": "a",
            "timestamp": pd.date_range("2024-01-01", periods=600, freq="h"),
            "value": 10 + 3 * np.sin(2 * np.pi * steps / 24),
        }
    )
    frame.to_csv(tmp_path / "data.csv", index=False)
    config = TrainingConfig(arch="gru", input_size=48, horizon=12, hidden_size=16, max_epochs=2, device="cuda")
    outcome = run_training(tmp_path / "data.csv", "gpu", config, Registry(tmp_path / "registry"), progress=False)
    assert outcome.manifest.provenance.device.startswith("cuda")
    assert outcome.manifest.metrics["test"]["model"]["mae"] < outcome.manifest.metrics["test"]["naive"]["mae"]
