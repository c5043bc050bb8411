"""The forecaster: a torch RNN, LSTM or GRU encoder over the input window and a direct
multi-horizon head that emits every step of the horizon at once.

The forecast is an anchor baseline plus a correction. The anchor repeats, for each step, the
value `anchor_period` steps before it (1: the naive forecast, a season: the seasonal naive), and
the head's weights start at zero, so an untrained network is exactly that baseline and training
can only move it from there. An optional linear skip from the window to the horizon (as in
LSTNet's highway and NLinear) carries the strong linear part; the recurrent encoder learns the
rest. With `segment_length` > 1 the encoder reads the window in segments (SegRNN): each segment's
points are embedded together, so a week of hourly data is 7 recurrent steps instead of 168.

An `Ensemble` holds several forecasters of one shape, trained with different seeds, and
combines their forecasts (mean or median) in one forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from forecast.model.config import LossName, NetworkConfig

_ENCODERS: dict[str, type[nn.RNN] | type[nn.LSTM] | type[nn.GRU]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


# Losses on errors in units of each series' in-sample seasonal MAE rather than of each window's
# scale: series of any size weigh alike, and within one series every window weighs alike (on a
# single series, `msse` is the plain MSE of the data and `mase` its MAE).
SERIES_SCALED_LOSSES: frozenset[LossName] = frozenset({"mase", "msse"})


def forecast_loss(
    forecast: torch.Tensor, target: torch.Tensor, loss: LossName, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """forecast, target (B, H) in the scaled space; weights (B, 1) turn scaled errors into errors
    in units of each series' in-sample seasonal MAE, which `mase` and `msse` need."""
    error = forecast - target  # (B, H)
    if loss in SERIES_SCALED_LOSSES:
        if weights is None:
            raise ValueError(
                f"the {loss} loss needs each window's weight (its scale over its series' MASE denominator)"
            )
        error = error * weights
    if loss in ("mse", "msse"):
        return error.square().mean()
    return error.abs().mean()


class Forecaster(nn.Module):
    def __init__(self, config: NetworkConfig, input_channels: int) -> None:
        super().__init__()
        self.config = config
        self.input_channels = input_channels
        # The training job makes both choices before it builds a network; left open, they are
        # the neutral ones: the naive anchor, point by point.
        self.segment_length = config.segment_length or 1
        anchor_period = config.anchor_period or 1
        self.embed: nn.Linear | None = None
        steps_width = input_channels
        if self.segment_length > 1 and config.recurrent:
            self.embed = nn.Linear(self.segment_length * input_channels, config.hidden_size)
            steps_width = config.hidden_size
        self.encoder: nn.RNN | nn.LSTM | nn.GRU | None = None
        if config.recurrent:
            self.encoder = _ENCODERS[config.arch](
                input_size=steps_width,
                hidden_size=config.hidden_size,
                num_layers=config.num_layers,
                dropout=config.dropout if config.num_layers > 1 else 0.0,
                batch_first=True,
            )
            self.head = nn.Linear(config.hidden_size, config.horizon)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.skip: nn.Linear | None = None
        if config.linear_skip:
            self.skip = nn.Linear(config.input_size, config.horizon)
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
        # Step h of the anchor repeats position L - m + (h mod m) of the window. Not saved with the
        # weights: the config rebuilds it.
        steps = torch.arange(config.horizon)
        source = config.input_size - anchor_period + steps % anchor_period  # (H,)
        self.anchor_source: torch.Tensor
        self.register_buffer("anchor_source", source, persistent=False)

    def linear_part(self) -> LinearPart | None:
        """The anchor and the linear skip alone, sharing this forecaster's weights; None without a
        skip. While the head is still zero, the forecaster forecasts exactly what this does."""
        if self.skip is None:
            return None
        return LinearPart(self.skip, self.anchor_source)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, L, C) with the scaled value in channel 0 -> forecasts (B, H), scaled."""
        values = inputs[:, :, 0]  # (B, L)
        anchor = values[:, self.anchor_source]  # (B, H)
        change = self._recurrent(inputs) if self.encoder is not None else torch.zeros_like(anchor)  # (B, H)
        if self.skip is not None:
            change = change + self.skip(values - values[:, -1:])  # (B, H)
        return anchor + change

    def _recurrent(self, inputs: torch.Tensor) -> torch.Tensor:
        """What the encoder and the head add to the anchor: (B, L, C) -> (B, H)."""
        assert self.encoder is not None
        steps = inputs
        if self.embed is not None:
            batch, length, channels = inputs.shape
            segments = inputs.reshape(batch, length // self.segment_length, self.segment_length * channels)
            steps = torch.relu(self.embed(segments))  # (B, L / S, hidden)
        encoded, _ = self.encoder(steps)  # (B, steps, hidden)
        head: torch.Tensor = self.head(self.dropout(encoded[:, -1]))  # (B, H)
        return head

    def loss(
        self, inputs: torch.Tensor, target: torch.Tensor, loss: LossName = "mse", weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The training loss in the scaled space; target (B, H)."""
        return forecast_loss(self(inputs), target, loss, weights)


class LinearPart(nn.Module):
    """A forecaster's anchor plus its linear skip (NLinear-like), the skip's weights shared: the
    training job fits it first, before the encoder (forecast.training.loop)."""

    def __init__(self, skip: nn.Linear, anchor_source: torch.Tensor) -> None:
        super().__init__()
        self.skip = skip
        self.anchor_source: torch.Tensor
        self.register_buffer("anchor_source", anchor_source, persistent=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, L, C) -> forecasts (B, H), scaled."""
        values = inputs[:, :, 0]  # (B, L)
        change: torch.Tensor = self.skip(values - values[:, -1:])  # (B, H)
        return values[:, self.anchor_source] + change


class Ensemble(nn.Module):
    """Members of one shape, combined step by step; its weights are the members' under `members.N.`."""

    def __init__(self, config: NetworkConfig, input_channels: int, members: list[Forecaster] | None = None) -> None:
        super().__init__()
        self.config = config
        self.input_channels = input_channels
        count = config.ensemble or 1
        built = members if members is not None else [Forecaster(config, input_channels) for _ in range(count)]
        self.members = nn.ModuleList(built)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, L, C) -> the members' combined forecasts (B, H), scaled."""
        forecasts = torch.stack([member(inputs) for member in self.members])  # (N, B, H)
        if self.config.combine == "mean":
            return forecasts.mean(dim=0)
        return forecasts.quantile(0.5, dim=0)  # interpolates between the middle two when N is even


Network = Forecaster | Ensemble


def build_network(config: NetworkConfig, input_channels: int) -> Network:
    """A single forecaster, or an ensemble of `config.ensemble` of them."""
    return Ensemble(config, input_channels) if (config.ensemble or 1) > 1 else Forecaster(config, input_channels)
