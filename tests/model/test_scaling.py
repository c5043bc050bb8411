"""Scaling: the global scalers reproduce scikit-learn, their parameters survive JSON, they are
fitted on the training part only, and window scaling is the window's own last value and spread."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from forecast.model.config import ScalingParams
from forecast.model.encoding import RawWindows, decode, encode
from forecast.model.scaling import fit_scaling, from_scaled, to_scaled, window_stats
from forecast.series.dataset import Dataset, Series
from forecast.series.windows import build_store, split_blocks

SKLEARN = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
INPUT_SIZE, HORIZON, VAL_SIZE, TEST_SIZE = 12, 4, 10, 8


@pytest.fixture
def training_values() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.gamma(2.0, 3.0, size=500) + 40.0  # skewed, so the three scalers disagree


@pytest.fixture
def held_out_values() -> np.ndarray:
    return np.random.default_rng(1).normal(50.0, 20.0, size=200)


def _affine(params: ScalingParams, values: np.ndarray) -> np.ndarray:
    return (values - params.loc) / params.scale


@pytest.mark.parametrize("scaler", ["standard", "minmax", "robust"])
def test_global_scaling_equals_sklearn_on_held_out_values(
    scaler: str, training_values: np.ndarray, held_out_values: np.ndarray
) -> None:
    params = fit_scaling("global", scaler, training_values)  # type: ignore[arg-type]
    reference = SKLEARN[scaler]().fit(training_values.reshape(-1, 1))
    expected = reference.transform(held_out_values.reshape(-1, 1))[:, 0]
    np.testing.assert_allclose(_affine(params, held_out_values), expected, rtol=0, atol=1e-9)
    # The library's own scale/unscale (float64 tensors) give the same numbers and invert them.
    loc = torch.tensor([[params.loc]], dtype=torch.float64)
    spread = torch.tensor([[params.scale]], dtype=torch.float64)
    scaled = to_scaled(torch.from_numpy(held_out_values)[None, :], loc, spread)
    np.testing.assert_allclose(scaled[0].numpy(), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(from_scaled(scaled, loc, spread)[0].numpy(), held_out_values, rtol=0, atol=1e-9)


@pytest.mark.parametrize("scaler", ["standard", "minmax", "robust"])
def test_scaling_params_round_trip_through_json(
    scaler: str, training_values: np.ndarray, held_out_values: np.ndarray
) -> None:
    params = fit_scaling("global", scaler, training_values)  # type: ignore[arg-type]
    restored = ScalingParams.model_validate_json(params.model_dump_json())
    assert restored == params
    assert restored.fitted  # the sklearn attributes are kept for audit
    history = torch.from_numpy(held_out_values.reshape(10, 20))
    features = torch.zeros(10, 20, 0, dtype=torch.float64)
    assert torch.equal(
        encode(RawWindows.without_covariates(history, features), restored).inputs,
        encode(RawWindows.without_covariates(history, features), params).inputs,
    )


def test_window_mode_round_trips_and_fits_nothing(training_values: np.ndarray) -> None:
    params = fit_scaling("window", "standard", training_values)
    assert params == ScalingParams(mode="window")
    assert ScalingParams.model_validate_json(params.model_dump_json()) == params


@pytest.mark.parametrize("scaler", ["standard", "minmax", "robust"])
def test_a_constant_training_part_gives_a_finite_scale(scaler: str) -> None:
    params = fit_scaling("global", scaler, np.full(50, 7.0))  # type: ignore[arg-type]
    assert np.isfinite(params.loc) and np.isfinite(params.scale) and params.scale > 0
    assert np.all(np.isfinite(_affine(params, np.array([6.0, 7.0, 8.0]))))


# --- no leakage: the scaler sees the training part only -------------------------------------------


def _dataset(values_by_series: dict[str, np.ndarray]) -> Dataset:
    series = [
        Series(series_id, pd.date_range("2024-01-01", periods=len(values), freq="D"), values)
        for series_id, values in values_by_series.items()
    ]
    return Dataset(series=series, freq="D", source="test")


def _fit_like_the_job(dataset: Dataset, scaler: str) -> ScalingParams:
    """The job's path: split by time, keep [0, train_end) of each series, fit on that only."""
    store = build_store(dataset, [])
    blocks = split_blocks(store, input_size=INPUT_SIZE, horizon=HORIZON, val_size=VAL_SIZE, test_size=TEST_SIZE)
    training_values = np.concatenate(
        [s.values[: int(end)] for s, end in zip(dataset.series, blocks.train_end, strict=True)]
    )
    return fit_scaling("global", scaler, training_values)  # type: ignore[arg-type]


@pytest.fixture
def history() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {"a": rng.normal(10.0, 2.0, size=80), "b": rng.normal(-5.0, 4.0, size=65)}


@pytest.mark.parametrize("scaler", ["standard", "minmax", "robust"])
def test_validation_and_test_values_do_not_change_the_fitted_scaler(
    scaler: str, history: dict[str, np.ndarray]
) -> None:
    before = _fit_like_the_job(_dataset(history), scaler)
    held_out = VAL_SIZE + TEST_SIZE
    changed = {series_id: values.copy() for series_id, values in history.items()}
    for values in changed.values():
        values[-held_out:] = 1e6  # extreme values would move any scaler that saw them
    assert _fit_like_the_job(_dataset(changed), scaler) == before


@pytest.mark.parametrize("scaler", ["standard", "minmax", "robust"])
def test_training_values_do_change_the_fitted_scaler(scaler: str, history: dict[str, np.ndarray]) -> None:
    """The check above can fail: the last training point of a series is seen by the fit."""
    before = _fit_like_the_job(_dataset(history), scaler)
    changed = {series_id: values.copy() for series_id, values in history.items()}
    train_end = len(changed["b"]) - VAL_SIZE - TEST_SIZE
    changed["b"][train_end - 1] = 1e6
    assert _fit_like_the_job(_dataset(changed), scaler) != before


# --- window mode and the one preprocessing path -----------------------------------------------------


@pytest.fixture
def windows() -> torch.Tensor:
    rng = np.random.default_rng(3)
    return torch.from_numpy(rng.normal(100.0, 15.0, size=(6, 24)))  # (B, L) float64


def test_window_stats_are_the_last_value_and_the_window_std(windows: torch.Tensor) -> None:
    loc, spread = window_stats(windows, ScalingParams(mode="window"))
    raw = windows.numpy()
    assert loc.shape == spread.shape == (6, 1)
    np.testing.assert_array_equal(loc[:, 0].numpy(), raw[:, -1])
    np.testing.assert_allclose(spread[:, 0].numpy(), raw.std(axis=1), rtol=1e-12)


def test_global_stats_are_the_fitted_constants(windows: torch.Tensor) -> None:
    params = ScalingParams(mode="global", scaler="standard", loc=3.5, scale=2.0)
    loc, spread = window_stats(windows, params)
    assert torch.equal(loc, torch.full((6, 1), 3.5, dtype=torch.float64))
    assert torch.equal(spread, torch.full((6, 1), 2.0, dtype=torch.float64))


@pytest.mark.parametrize(
    "params",
    [ScalingParams(mode="window"), ScalingParams(mode="global", scaler="standard", loc=90.0, scale=12.0)],
    ids=["window", "global"],
)
def test_encode_then_decode_gives_back_the_window(windows: torch.Tensor, params: ScalingParams) -> None:
    features = torch.randn(6, 24, 4, dtype=torch.float64)
    encoded = encode(RawWindows.without_covariates(windows, features), params)
    assert encoded.inputs.shape == (6, 24, 5)
    assert torch.equal(encoded.inputs[:, :, 1:], features)  # features pass through unscaled
    torch.testing.assert_close(decode(encoded.inputs[:, :, 0], encoded), windows, rtol=1e-14, atol=1e-12)
    if params.mode == "window":
        assert torch.equal(encoded.inputs[:, -1, 0], torch.zeros(6, dtype=torch.float64))  # centred on the last
        unit_spread = encoded.inputs[:, :, 0].std(dim=1, unbiased=False)
        torch.testing.assert_close(unit_spread, torch.ones(6, dtype=torch.float64))


@pytest.mark.parametrize("level", [0.0, 5.0, -1234.5, 1e9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_constant_window_scales_to_finite_values_and_back(level: float, dtype: torch.dtype) -> None:
    history = torch.full((3, 16), level, dtype=dtype)
    encoded = encode(
        RawWindows.without_covariates(history, torch.zeros(3, 16, 0, dtype=dtype)), ScalingParams(mode="window")
    )
    assert bool(torch.isfinite(encoded.inputs).all())
    assert bool((encoded.spread > 0).all())
    assert torch.equal(encoded.inputs, torch.zeros_like(encoded.inputs))
    # A flat forecast in scaled space decodes to the constant, exactly.
    assert torch.equal(decode(torch.zeros(3, 5, dtype=dtype), encoded), torch.full((3, 5), level, dtype=dtype))
