"""Small real objects for unit tests, built without training: a valid manifest, a synthetic
dataset, and a forecaster whose head is no longer zero (so it differs from the naive forecast)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import torch

from forecast.config.training import TrainingConfig
from forecast.model.config import Architecture, NetworkConfig, ScalingParams
from forecast.model.covariates import Covariates
from forecast.model.intervals import calibrate
from forecast.model.network import Forecaster
from forecast.registry.manifest import DataFingerprint, Manifest, Provenance
from forecast.series.dataset import Dataset, Series

# The metrics every block and method records (DESIGN.md: metrics.<block>.<method>.<metric>).
METRIC_NAMES = ("mae", "mse", "rmse", "smape", "mase")


def make_manifest(
    *,
    freq: str = "h",
    features: list[str] | None = None,
    input_size: int = 6,
    horizon: int = 4,
    arch: Architecture = "gru",
    hidden_size: int = 4,
    name: str = "demo",
    covariates: Covariates | None = None,
    horizon_inputs: bool | None = None,
) -> Manifest:
    """A valid manifest with window scaling and a real conformal calibration of `horizon` steps.

    The calibration's scores grow with the step, as real forecast errors do."""
    names = ["hour_of_day", "day_of_week"] if features is None else features
    now = datetime.now(UTC)
    scores = np.abs(np.random.default_rng(0).normal(size=(200, horizon))) * np.arange(1, horizon + 1)  # (W, H)
    return Manifest(
        name=name,
        version=1,
        created_at=now,
        training=TrainingConfig(
            arch=arch,
            input_size=input_size,
            horizon=horizon,
            hidden_size=hidden_size,
            freq=freq,
            features=names,
            horizon_inputs=horizon_inputs,
        ),
        freq=freq,
        features=names,
        scaling=ScalingParams(mode="window"),
        covariates=covariates or Covariates(),
        season_length=24,
        mase_period=24,
        data=DataFingerprint(
            sha256="0" * 64, source="factory", n_series=1, n_points=100, first_timestamp=now, last_timestamp=now
        ),
        metrics={},
        intervals=calibrate(scores),
        epochs_run=0,
        best_epoch=0,
        timings={},
        provenance=Provenance(forecast="test", torch=torch.__version__, python=sys.version.split()[0], device="cpu"),
    )


def make_dataset(lengths: list[int], *, freq: str = "h", seed: int = 0) -> Dataset:
    """Series of the given lengths, with a daily cycle, different levels and noise.

    Values are multiples of 1/4, exact in float32, so the float32 store holds them unchanged."""
    rng = np.random.default_rng(seed)
    series = []
    for index, length in enumerate(lengths):
        steps = np.arange(length)
        raw = 50.0 * (index + 1) + 5.0 * np.sin(2 * np.pi * steps / 24) + rng.normal(0.0, 1.0, size=length)
        series.append(
            Series(
                series_id=f"s{index}",
                timestamps=pd.date_range("2024-01-01", periods=length, freq=freq),
                values=np.round(raw * 4.0) / 4.0,
            )
        )
    return Dataset(series=series, freq=freq, source="factory")


def perturbed_network(config: NetworkConfig, input_channels: int, seed: int = 0) -> Forecaster:
    """A forecaster with random head and skip weights: not the naive forecast any more."""
    torch.manual_seed(seed)
    network = Forecaster(config, input_channels)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return network


@dataclass
class Posted:
    """A series as a client posts it (forecast.serving.pipeline.PostedSeries): values with a start
    and a frequency by default, or with timestamps; covariates by kind when the version reads some."""

    id: str
    values: list[float]
    start: str | None = "2024-01-01T00:00"
    freq: str | None = "h"
    timestamps: list[str] | None = None
    past_covariates: dict[str, list[float]] | None = None
    future_covariates: dict[str, list[float]] | None = None
    static_covariates: dict[str, str | float] | None = None


# The effect of one unit of `temperature` on the target in covariate_frame, per step.
TEMPERATURE_EFFECT = 2.0


def covariate_frame(series_ids: tuple[str, ...] = ("a", "b"), n_points: int = 400, seed: int = 0) -> pd.DataFrame:
    """Hourly long-format series driven by their covariates: a daily cycle, plus
    TEMPERATURE_EFFECT times a future-known `temperature` that the past does not predict (white
    noise), plus a region's level (static, categorical) and small noise; `load` is a past
    covariate that echoes the last hour's target. Values rounded to quarters, exact in float32."""
    rng = np.random.default_rng(seed)
    frames = []
    levels = {"north": 20.0, "south": 30.0}
    for index, series_id in enumerate(series_ids):
        region = "north" if index % 2 == 0 else "south"
        steps = np.arange(n_points)
        temperature = np.round(rng.normal(0.0, 2.0, n_points) * 4) / 4
        target = levels[region] + 3.0 * np.sin(2 * np.pi * steps / 24) + TEMPERATURE_EFFECT * temperature
        target = np.round((target + rng.normal(0.0, 0.1, n_points)) * 4) / 4
        frames.append(
            pd.DataFrame(
                {
                    "series_id": series_id,
                    "timestamp": pd.date_range("2024-01-01", periods=n_points, freq="h"),
                    "value": target,
                    "temperature": temperature,
                    "load": np.concatenate([[target[0]], target[:-1]]),
                    "region": region,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
