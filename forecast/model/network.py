"""The forecaster: a torch RNN, LSTM or GRU encoder over the input window and a direct
multi-horizon head that emits every step of the horizon at once.

The head forecasts the change from the window's last value, and its weights start at zero, so
an untrained network is exactly the naive forecast and training can only move it from there.
An optional linear skip from the raw window to the horizon (as in LSTNet's highway and NLinear)
carries the level and the strong linear part; the recurrent encoder learns the rest.
"""

from __future__ import annotations

import torch
from torch import nn

from forecast.model.config import NetworkConfig

_ENCODERS: dict[str, type[nn.RNN] | type[nn.LSTM] | type[nn.GRU]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Forecaster(nn.Module):
    def __init__(self, config: NetworkConfig, input_channels: int) -> None:
        super().__init__()
        self.config = config
        self.input_channels = input_channels
        self.encoder = _ENCODERS[config.arch](
            input_size=input_channels,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.horizon)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.skip: nn.Linear | None = None
        if config.linear_skip:
            self.skip = nn.Linear(config.input_size, config.horizon)
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, L, F) with the scaled value in channel 0 -> forecasts (B, H), scaled."""
        level = inputs[:, -1, :1]  # (B, 1) last scaled value
        encoded, _ = self.encoder(inputs)  # (B, L, hidden)
        change = self.head(self.dropout(encoded[:, -1]))  # (B, H)
        if self.skip is not None:
            change = change + self.skip(inputs[:, :, 0] - level)  # (B, H)
        return level + change

    def loss(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared error in the scaled space; target (B, H)."""
        return nn.functional.mse_loss(self(inputs), target)
