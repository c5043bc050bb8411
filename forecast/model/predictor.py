"""A trained network with its preprocessing: raw windows in, forecasts on the original scale out.

The training job's evaluation and the API's engine both forecast through `Predictor`; the
registry rebuilds one exactly as it was trained (`forecast.registry.weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.covariates import NO_COVARIATES, Covariates
from forecast.model.encoding import RawWindows, decode, encode
from forecast.model.intervals import IntervalScale
from forecast.model.missing import before_first_observed, too_thin
from forecast.model.network import Network

Values = TypeVar("Values", np.ndarray, torch.Tensor)


@dataclass(slots=True)
class Prediction(Generic[Values]):
    """Forecasts of a batch of windows: the one record from the device to the response.

    On the device it holds tensors (`Predictor.forecast_on_device`); `predict` brings it to the
    host as float64 arrays; the inference process sends its two arrays over the wire
    (`arrays`); the batcher hands each window its own row (`split`), and a request or a backtest
    joins its rows back into one block (`join`)."""

    mean: Values  # (B, H) on the original scale
    spread: Values  # (B,) each window's scale, which the conformal intervals multiply

    def __len__(self) -> int:
        return len(self.spread)

    def rows(self, rows: slice) -> Prediction[Values]:
        return Prediction(mean=self.mean[rows], spread=self.spread[rows])

    def split(self) -> list[Prediction[Values]]:
        """One single-row record per window (views, no copies)."""
        return [self.rows(slice(i, i + 1)) for i in range(len(self))]

    def arrays(self) -> tuple[Values, Values]:
        return self.mean, self.spread

    @staticmethod
    def join(parts: Sequence[Prediction[np.ndarray]], horizon: int | None = None) -> Prediction[np.ndarray]:
        """The parts' rows as one block, as float64, cut to the first `horizon` steps."""
        if not parts:
            return Prediction(mean=np.zeros((0, horizon or 0)), spread=np.zeros(0))
        mean = np.concatenate([part.mean for part in parts]).astype(np.float64, copy=False)
        spread = np.concatenate([part.spread for part in parts]).astype(np.float64, copy=False)
        return Prediction(mean=mean[:, :horizon], spread=spread)


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

    def predict(self, windows: RawWindows, batch_size: int = 4096) -> Prediction[np.ndarray]:
        """Raw windows on any device -> their forecasts on the host, as float64."""
        if self.device.type == "cuda" and not windows.history.is_cuda:  # pinned memory: asynchronous copies
            windows = windows.pin_memory()
        means, spreads = [], []
        with torch.inference_mode():
            for start in range(0, len(windows), batch_size):
                forecast = self.forecast_on_device(windows.rows(slice(start, start + batch_size)))
                means.append(forecast.mean.cpu())
                spreads.append(forecast.spread.cpu())
        mean = torch.cat(means).double().numpy() if means else np.zeros((0, self.config.horizon))
        spread = torch.cat(spreads).double().numpy() if spreads else np.zeros(0)
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

    def forecast_on_device(self, windows: RawWindows) -> Prediction[torch.Tensor]:
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
        return Prediction(mean=decode(forecast, encoded), spread=spread[:, 0])
