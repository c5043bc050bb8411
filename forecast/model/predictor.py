"""A trained network with its preprocessing: raw windows in, forecasts on the original scale out.

The training job's evaluation and the API's engine both forecast through `Predictor`; the
registry rebuilds one exactly as it was trained (`forecast.registry.weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.covariates import NO_COVARIATES, Covariates
from forecast.model.encoding import RawWindows, decode, encode
from forecast.model.intervals import IntervalScale
from forecast.model.missing import before_first_observed, too_thin
from forecast.model.network import Network


@dataclass(slots=True)
class Prediction:
    mean: np.ndarray  # (B, H) on the original scale
    spread: np.ndarray  # (B,) each window's scale, which the conformal intervals multiply


@dataclass(slots=True)
class DeviceForecast:
    """One forward pass's result, still on the predictor's device."""

    mean: torch.Tensor  # (B, H) on the original scale
    spread: torch.Tensor  # (B, 1)


class Predictor:
    def __init__(
        self,
        network: Network,
        scaling: ScalingParams,
        device: torch.device,
        interval_scale: IntervalScale = "window",
        covariates: Covariates = NO_COVARIATES,
        season_length: int = 1,
    ) -> None:
        self.network = network.to(device).eval()
        # A window with fewer observed points than one season (a series that short, or that
        # sparse) is forecast by the anchor alone: the network has too little to read.
        self.season_length = season_length
        self.scaling = scaling
        self.device = device
        self.interval_scale = interval_scale  # which scale `spread` reports: the calibration's
        self.covariates = covariates

    @property
    def config(self) -> NetworkConfig:
        return self.network.config

    @property
    def fitted_anchor(self) -> bool:
        """Whether the anchor is fitted to each window (drift, Theta) rather than a value repeated."""
        return (self.config.anchor or "repeat") != "repeat"

    def predict(self, windows: RawWindows, batch_size: int = 4096) -> Prediction:
        """Raw windows on any device -> Prediction."""
        if self.device.type == "cuda" and not windows.history.is_cuda:  # pinned memory: asynchronous copies
            windows = windows.pin_memory()
        means, spreads = [], []
        with torch.inference_mode():
            for start in range(0, len(windows), batch_size):
                forecast = self.forecast_on_device(windows.rows(slice(start, start + batch_size)))
                means.append(forecast.mean.cpu())
                spreads.append(forecast.spread.cpu())
        mean = torch.cat(means).double().numpy() if means else np.zeros((0, self.config.horizon))
        spread = torch.cat(spreads).double().numpy()[:, 0] if spreads else np.zeros(0)
        return Prediction(mean=mean, spread=spread)

    def _anchor_only(self, inputs: torch.Tensor, observed: torch.Tensor, forecast: torch.Tensor) -> torch.Tensor:
        """The forecast, with the anchor's alone for the windows the network has too little to
        read (`forecast.model.missing.too_thin`). Where a repeated anchor's period reaches into
        the padding (a weekly anchor on a few days of hourly data), the seasonal naive of one
        season stands in for it: padding repeats the last value, so the anchor would be the
        naive forecast."""
        length, horizon = observed.shape[1], forecast.shape[1]
        padding = before_first_observed(observed).sum(dim=1, keepdim=True)  # (B, 1)
        fallback = too_thin(padding, observed.sum(dim=1, keepdim=True), length, self.season_length)
        if self.fitted_anchor and not bool(fallback.any()):  # spare a Theta's pass over the window
            return forecast
        period = self.config.anchor_period or 1
        anchor = self.network.anchor(inputs, observed)  # (B, H)
        if not self.fitted_anchor and self.season_length < period and self.season_length <= length:
            steps = torch.arange(horizon, device=inputs.device)
            seasonal = inputs[:, :, 0][:, length - self.season_length + steps % self.season_length]
            anchor = torch.where(padding > length - period, seasonal, anchor)
        return torch.where(fallback, anchor, forecast)

    def forecast_on_device(self, windows: RawWindows) -> DeviceForecast:
        """One forward pass on the predictor's device; the caller picks the grad mode."""
        encoded = encode(windows.to(self.device), self.scaling, self.covariates, gaps=self.config.gap_rule)
        spread = encoded.window_spread if self.interval_scale == "window" else encoded.spread
        forecast = self.network(encoded.inputs, encoded.known, encoded.static)  # (B, H)
        if encoded.observed is not None:
            if self.fitted_anchor and not self.network.layout.mask:
                # Without the mask channel the network fits its drift or Theta over the padding
                # too; the predictor knows what was observed, and the anchor is the summand to swap.
                observed_anchor = self.network.anchor(encoded.inputs, encoded.observed)
                forecast = forecast - self.network.anchor(encoded.inputs) + observed_anchor
            forecast = self._anchor_only(encoded.inputs, encoded.observed, forecast)
        return DeviceForecast(mean=decode(forecast, encoded), spread=spread)
