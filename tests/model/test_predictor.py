"""The predictor: weights round-trip exactly through safetensors without pickle, weights that do not
fit the manifest's network are refused with a message that says which tensor, and forecasting in
chunks gives the same numbers as one batch."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch

from forecast.errors import RegistryCorrupt
from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.encoding import RawWindows
from forecast.model.intervals import Calibration
from forecast.model.network import build_network
from forecast.model.predictor import Predictor
from forecast.registry.weights import network_from_weights, weights_bytes
from tests.factories import perturbed_network

CONFIG = NetworkConfig(arch="lstm", input_size=10, horizon=3, hidden_size=6)
CHANNELS = 3


@pytest.fixture
def windows() -> tuple[torch.Tensor, torch.Tensor]:
    """23 raw windows (B, L) at different levels and their features (B, L, F - 1)."""
    generator = torch.Generator().manual_seed(0)
    levels = torch.linspace(-50.0, 500.0, 23)[:, None]  # (B, 1)
    history = levels + torch.randn(23, CONFIG.input_size, generator=generator).cumsum(dim=1)  # (B, L)
    features = torch.rand(23, CONFIG.input_size, CHANNELS - 1, generator=generator) * 2 - 1  # (B, L, F-1)
    return history, features


def _no_pickle(*args: object, **kwargs: object) -> None:
    raise AssertionError("pickle was used to load weights")


def test_weights_round_trip_exactly_without_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    network = perturbed_network(CONFIG, CHANNELS)
    payload = weights_bytes(network)
    monkeypatch.setattr(pickle, "loads", _no_pickle)
    monkeypatch.setattr(pickle, "load", _no_pickle)
    monkeypatch.setattr(torch, "load", _no_pickle)

    restored = network_from_weights(CONFIG, CHANNELS, payload)

    original, loaded = network.state_dict(), restored.state_dict()
    assert original.keys() == loaded.keys()
    for key, tensor in original.items():
        assert torch.equal(tensor, loaded[key]), key
    assert weights_bytes(restored) == payload  # serialising is deterministic too


def test_the_weights_file_is_safetensors_a_json_header_then_raw_tensors() -> None:
    network = perturbed_network(CONFIG, CHANNELS)
    payload = weights_bytes(network)
    (header_size,) = struct.unpack("<Q", payload[:8])
    header = json.loads(payload[8 : 8 + header_size])
    tensors = {key: value for key, value in header.items() if key != "__metadata__"}
    assert set(tensors) == set(network.state_dict())
    for key, tensor in network.state_dict().items():
        assert tensors[key]["shape"] == list(tensor.shape)
        assert tensors[key]["dtype"] == "F32"


@pytest.mark.parametrize(
    ("served", "named"),
    [
        (CONFIG.model_copy(update={"hidden_size": 7}), "encoder.weight_ih_l0"),
        (CONFIG.model_copy(update={"horizon": 4}), "head.weight"),
        (CONFIG.model_copy(update={"arch": "gru"}), "encoder.weight_ih_l0"),
        (CONFIG.model_copy(update={"linear_skip": False}), "skip"),
    ],
)
def test_weights_of_another_shape_are_refused_naming_the_tensor(served: NetworkConfig, named: str) -> None:
    payload = weights_bytes(perturbed_network(CONFIG, CHANNELS))
    with pytest.raises(RegistryCorrupt) as refused:
        network_from_weights(served, CHANNELS, payload)
    message = str(refused.value)
    assert "weights do not fit the manifest's network" in message
    assert named in message
    assert "\n" not in message  # one line for the log and the CLI


@pytest.mark.parametrize("payload", [b"not safetensors at all", b"", b"\x80\x04\x95 a pickle"])
def test_bytes_that_are_not_safetensors_are_refused_as_corrupt(payload: bytes) -> None:
    with pytest.raises(RegistryCorrupt, match="weights do not fit"):
        network_from_weights(CONFIG, CHANNELS, payload)


def test_a_truncated_weights_file_is_refused_as_corrupt() -> None:
    payload = weights_bytes(perturbed_network(CONFIG, CHANNELS))
    with pytest.raises(RegistryCorrupt):
        network_from_weights(CONFIG, CHANNELS, payload[: len(payload) // 2])


def test_predicting_in_chunks_equals_one_batch(windows: tuple[torch.Tensor, torch.Tensor]) -> None:
    history, features = windows
    predictor = Predictor(perturbed_network(CONFIG, CHANNELS), ScalingParams(mode="window"), torch.device("cpu"))
    whole = predictor.predict(RawWindows.without_covariates(history, features))
    chunked = predictor.predict(RawWindows.without_covariates(history, features), batch_size=7)  # 7 + 7 + 7 + 2

    assert whole.mean.shape == (23, CONFIG.horizon) and whole.spread.shape == (23,)
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(chunked.spread, whole.spread)
    # Not the naive forecast: the perturbed network really forecasts something.
    assert not np.allclose(whole.mean, history[:, -1:].numpy().astype(np.float64))


def test_predictions_are_on_the_original_scale(windows: tuple[torch.Tensor, torch.Tensor]) -> None:
    """A window shifted by a constant gets a forecast shifted by the same constant (window scaling)."""
    history, features = windows
    predictor = Predictor(perturbed_network(CONFIG, CHANNELS), ScalingParams(mode="window"), torch.device("cpu"))
    base = predictor.predict(RawWindows.without_covariates(history, features))
    shifted = predictor.predict(RawWindows.without_covariates(history + 1000.0, features))
    np.testing.assert_allclose(shifted.mean, base.mean + 1000.0, atol=1e-2)  # float32 rounding of x + 1000


def test_an_empty_batch_gives_empty_forecasts(windows: tuple[torch.Tensor, torch.Tensor]) -> None:
    history, features = windows
    predictor = Predictor(perturbed_network(CONFIG, CHANNELS), ScalingParams(mode="window"), torch.device("cpu"))
    empty = predictor.predict(RawWindows.without_covariates(history[:0], features[:0]))
    assert empty.mean.shape == (0, CONFIG.horizon)
    assert empty.spread.shape == (0,)


def test_a_large_level_keeps_its_small_steps() -> None:
    """A level of 1e8 with steps of 0.5: float32 (spacing 8 there) would round the steps away.
    Served windows are float64 until scaled, so the untrained network (exactly the naive
    forecast) answers the last value itself."""
    history = torch.tensor([1e8 + 0.5 * step for step in range(CONFIG.input_size)], dtype=torch.float64)[None, :]
    features = torch.zeros(1, CONFIG.input_size, CHANNELS - 1)
    predictor = Predictor(build_network(CONFIG, CHANNELS), ScalingParams(mode="window"), torch.device("cpu"))
    forecast = predictor.predict(RawWindows.without_covariates(history, features))
    assert forecast.mean.tolist() == [[1e8 + 0.5 * (CONFIG.input_size - 1)] * CONFIG.horizon]


def test_intervals_follow_each_windows_volatility_under_global_scaling(
    windows: tuple[torch.Tensor, torch.Tensor],
) -> None:
    """Under global scaling the network's scale is one constant, but the intervals' scale is each
    window's own, as under window scaling: a calm window gets narrow intervals, a volatile one wide.
    A version calibrated before that (no `scale` in its intervals) keeps the scaling's constant."""
    history, features = windows
    calm_and_volatile = torch.cat([history[:1], history[:1] * 3 - 2 * history[:1, -1:]])  # same end, 3x the swings
    features = features[:2]
    network = perturbed_network(CONFIG, CHANNELS)
    global_scaling = ScalingParams(mode="global", scaler="standard", loc=10.0, scale=7.0)
    on_window = Predictor(network, ScalingParams(mode="window"), torch.device("cpu")).predict(
        RawWindows.without_covariates(calm_and_volatile, features)
    )
    on_global = Predictor(network, global_scaling, torch.device("cpu")).predict(
        RawWindows.without_covariates(calm_and_volatile, features)
    )
    before = Predictor(network, global_scaling, torch.device("cpu"), interval_scale="scaling")

    np.testing.assert_allclose(on_global.spread, on_window.spread)
    assert on_global.spread[1] == pytest.approx(3 * on_global.spread[0])
    np.testing.assert_array_equal(
        before.predict(RawWindows.without_covariates(calm_and_volatile, features)).spread, [7.0, 7.0]
    )
    old_manifest_intervals = {"levels": [50.0], "quantiles": [[1.0, 1.0, 1.0]], "n_windows": 10}
    assert Calibration.model_validate(old_manifest_intervals).scale == "scaling"


def test_a_window_padded_by_a_season_or_more_gets_the_anchors_forecast() -> None:
    """The network's correction is fitted on whole windows; where a season or more of the window
    is padding (a series that much shorter than the input), the anchor forecasts alone
    (bench/gaps.py measured the network losing to it there). Less padding keeps the network."""
    config = NetworkConfig(arch="gru", input_size=12, horizon=3, hidden_size=6, missing_mask=True, anchor_period=4)
    season = 4
    predictor = Predictor(
        perturbed_network(config, 1), ScalingParams(mode="window"), torch.device("cpu"), season_length=season
    )
    series = torch.arange(1.0, 13.0, dtype=torch.float64) % 5 + 10.0
    features = torch.zeros(1, 12, 0)

    def forecast(padding: int) -> np.ndarray:
        history = series.clone()[None, :]
        history[0, :padding] = float("nan")
        return predictor.predict(RawWindows.without_covariates(history, features)).mean[0]

    anchor = series[-season:][: config.horizon].numpy()  # the last season repeated
    np.testing.assert_allclose(forecast(season), anchor, rtol=1e-6)
    np.testing.assert_allclose(forecast(2 * season), anchor, rtol=1e-6)
    assert not np.allclose(forecast(season - 1), anchor)


def test_where_the_anchors_period_reaches_into_the_padding_the_seasonal_naive_stands_in() -> None:
    """A two-season anchor on a window whose first half is padding would read the padding (the
    last value repeated): the anchor-only forecast is then the one-season seasonal naive."""
    config = NetworkConfig(arch="gru", input_size=12, horizon=3, hidden_size=6, missing_mask=True, anchor_period=8)
    predictor = Predictor(
        perturbed_network(config, 1), ScalingParams(mode="window"), torch.device("cpu"), season_length=4
    )
    history = (torch.arange(1.0, 13.0, dtype=torch.float64) % 5 + 10.0)[None, :]
    history[0, :6] = float("nan")
    forecast = predictor.predict(RawWindows.without_covariates(history, torch.zeros(1, 12, 0))).mean[0]
    np.testing.assert_allclose(forecast, history[0, -4:-1].numpy(), rtol=1e-6)


def test_one_gap_in_a_window_shorter_than_a_season_keeps_the_networks_forecast() -> None:
    """With the season longer than the input (hourly data, a 12-point window), "fewer observed
    points than a season" would hold for every window with a gap: the bound is the window."""
    config = NetworkConfig(arch="gru", input_size=12, horizon=3, hidden_size=6, missing_mask=True, anchor_period=1)
    predictor = Predictor(
        perturbed_network(config, 1), ScalingParams(mode="window"), torch.device("cpu"), season_length=24
    )
    history = (torch.arange(1.0, 13.0, dtype=torch.float64) % 5 + 10.0)[None, :]
    history[0, 5] = float("nan")
    forecast = predictor.predict(RawWindows.without_covariates(history, torch.zeros(1, 12, 0))).mean[0]
    assert not np.allclose(forecast, history[0, -1].item())  # not the anchor (the naive here)
