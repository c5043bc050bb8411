"""The forecaster: a torch RNN, LSTM or GRU encoder over the input window and a direct
multi-horizon head that emits every step of the horizon at once.

The forecast is an anchor baseline plus a correction. The anchor repeats, for each step, the
value `anchor_period` steps before it (1: the naive forecast, a season: the seasonal naive), and
the head's weights start at zero, so an untrained network is exactly that baseline and training
can only move it from there. An optional linear skip from the window to the horizon (as in
LSTNet's highway and NLinear) carries the strong linear part; the recurrent encoder learns the
rest. With `segment_length` > 1 the encoder reads the window in segments (SegRNN): each segment's
points are embedded together, so a week of hourly data is 7 recurrent steps instead of 168.

Covariates enter where the field puts them: past covariates, the calendar and the future-known
covariates over the window are input channels of the encoder, and embedded static covariates
join every step; the linear skip reads the past covariates' windows and the static ones too (an
ARX model beside the network). With `horizon_inputs`, the future-known inputs over the horizon
(the calendar features and the future-known covariates, one path for both) reach the head,
through a local MLP applied step by step as in MQ-RNN, and the skip (`forecast.model.skip`). Both
read step h's inputs for step h only, so a forecast of its first h steps needs them over those h
steps alone.

An `Ensemble` holds several forecasters of one shape, trained with different seeds, and
combines their forecasts (mean or median) in one forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import nn

from forecast.model.anchors import Anchor
from forecast.model.config import InputLayout, LossName, NetworkConfig, static_embedding_width
from forecast.model.skip import HorizonLinear, LinearPart, required_known, skip_change, skip_width

_ENCODERS: dict[str, type[nn.RNN] | type[nn.LSTM] | type[nn.GRU]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


# Losses on errors in units of each series' in-sample seasonal MAE rather than of each window's
# scale: series of any size weigh alike, and within one series every window weighs alike (on a
# single series, `msse` is the plain MSE of the data and `mase` its MAE).
SERIES_SCALED_LOSSES: frozenset[LossName] = frozenset({"mase", "msse"})


def forecast_loss(
    forecast: torch.Tensor, target: torch.Tensor, loss: LossName, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """forecast, target (B, H) in the scaled space, the target NaN where it is missing (such a
    step adds nothing: the loss is the mean over the observed targets); weights (B, 1) turn scaled
    errors into errors in units of each series' in-sample seasonal MAE, which `mase` and `msse` need."""
    observed = torch.isfinite(target)
    complete = bool(observed.all())
    if not complete:  # a missing target's error is zero (no NaN reaches the gradient) and not counted
        target = torch.where(observed, target, forecast.detach())
    error = forecast - target  # (B, H)
    if loss in SERIES_SCALED_LOSSES:
        if weights is None:
            raise ValueError(
                f"the {loss} loss needs each window's weight (its scale over its series' MASE denominator)"
            )
        error = error * weights
    terms = error.square() if loss in ("mse", "msse") else error.abs()
    if complete:
        return terms.mean()
    return terms.sum() / observed.sum().clamp(min=1)


# In training, a series' category is hidden (replaced by the unseen bucket) this often, so the
# bucket learns a response to "some series" for the categories a request brings that training
# never saw; otherwise its row would never be trained.
UNSEEN_CATEGORY_RATE = 0.1


def with_mask(config: NetworkConfig, layout: InputLayout | int) -> InputLayout:
    """The layout a network of `config` reads: the given one, with the mask channel if it reads one."""
    return replace(InputLayout.of(layout), mask=bool(config.missing_mask))


class StaticEmbedding(nn.Module):
    """Static covariates as one vector per series: each categorical one embedded (code 0, the
    unseen bucket, has its own row, starting at zero), the numeric ones as they come (already
    scaled)."""

    def __init__(self, layout: InputLayout) -> None:
        super().__init__()
        self.categorical = len(layout.static_categories)
        tables = [nn.Embedding(count, static_embedding_width(count)) for count in layout.static_categories]
        with torch.no_grad():
            for table in tables:
                table.weight[0].zero_()
        self.tables = nn.ModuleList(tables)

    def forward(self, static: torch.Tensor) -> torch.Tensor:
        """static (B, S): codes, then numeric values -> (B, E)."""
        codes = static[:, : self.categorical].long()  # (B, n_categorical)
        if self.training:
            hidden = torch.rand(codes.shape, device=codes.device) < UNSEEN_CATEGORY_RATE
            codes = codes.masked_fill(hidden, 0)
        parts = [table(codes[:, index]) for index, table in enumerate(self.tables)]  # each (B, width)
        return torch.cat([*parts, static[:, self.categorical :]], dim=-1)


class HorizonDecoder(nn.Module):
    """The local MLP of MQ-RNN (Wen et al., 2017): step h's correction from the encoder's context
    and step h's future-known inputs, so the head can learn effects that are not linear (a
    temperature's on demand). Its output layer starts at zero: untrained, it adds nothing."""

    def __init__(self, hidden_size: int, known_width: int, horizon: int) -> None:
        super().__init__()
        width = hidden_size
        self.context = nn.Linear(hidden_size, width)
        self.known = nn.Linear(known_width, width, bias=False)
        self.step = nn.Parameter(0.1 * torch.randn(horizon, width))  # which step of the horizon
        self.out = nn.Linear(width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, context: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """context (B, hidden), known (B, H, W) -> (B, H)."""
        hidden = torch.relu(self.context(context)[:, None, :] + self.known(known) + self.step)  # (B, H, width)
        out: torch.Tensor = self.out(hidden).squeeze(-1)  # (B, H)
        return out


class Forecaster(nn.Module):
    def __init__(self, config: NetworkConfig, layout: InputLayout | int) -> None:
        """`layout` says what the network reads; an int is the input channels of a network without
        covariates (the value and its calendar columns)."""
        super().__init__()
        self.config = config
        self.layout = with_mask(config, layout)
        self.input_channels = self.layout.encoder_channels
        # The training job makes both choices before it builds a network; left open, they are
        # the neutral ones: the naive anchor, point by point.
        self.segment_length = config.segment_length or 1
        reads_horizon = bool(config.horizon_inputs) and self.layout.known_width > 0
        self.static_embedding = StaticEmbedding(self.layout) if self.layout.static_width else None
        self.embed: nn.Linear | None = None
        steps_width = self.input_channels
        if self.segment_length > 1 and config.recurrent:
            self.embed = nn.Linear(self.segment_length * self.input_channels, config.hidden_size)
            steps_width = config.hidden_size
        self.encoder: nn.RNN | nn.LSTM | nn.GRU | None = None
        self.decoder: HorizonDecoder | None = None
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
            if reads_horizon:
                self.decoder = HorizonDecoder(config.hidden_size, self.layout.known_width, config.horizon)
        self.dropout = nn.Dropout(config.dropout)
        self.skip: nn.Linear | None = None
        self.horizon_skip: HorizonLinear | None = None
        if config.linear_skip:
            self.skip = nn.Linear(skip_width(self.layout, config.input_size), config.horizon)
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
            if reads_horizon:
                self.horizon_skip = HorizonLinear(config.horizon, self.layout.known_width)
        # The baseline the head and the skip correct (forecast.model.anchors); it holds no weights.
        self.baseline = Anchor.of(config)

    @property
    def anchor_source(self) -> torch.Tensor:
        """(H,) the window position each step's anchor stands on (the naive's for drift and theta)."""
        return self.baseline.source

    def anchor(self, inputs: torch.Tensor, observed: torch.Tensor | None = None) -> torch.Tensor:
        """The anchor alone: (B, L, C) -> (B, H), scaled; `observed` (B, L) overrides the mask channel."""
        return self.baseline.of_inputs(inputs, self.layout, observed)

    @property
    def reads_horizon(self) -> bool:
        """Whether forward needs the future-known inputs over the horizon."""
        return self.decoder is not None or self.horizon_skip is not None

    def linear_part(self) -> LinearPart | None:
        """The anchor and the linear skip alone, sharing this forecaster's weights; None without a
        skip. While the head is still zero, the forecaster forecasts exactly what this does."""
        if self.skip is None:
            return None
        return LinearPart(self.skip, self.horizon_skip, self.baseline, self.layout)

    def linear_parameters(self) -> list[nn.Parameter]:
        """The skip's weights, which the training job solves in closed form before the epochs."""
        modules = [module for module in (self.skip, self.horizon_skip) if module is not None]
        return [parameter for module in modules for parameter in module.parameters()]

    def forward(
        self, inputs: torch.Tensor, known: torch.Tensor | None = None, static: torch.Tensor | None = None
    ) -> torch.Tensor:
        """inputs (B, L, C) with the scaled value in channel 0, known (B, H, W) the future-known
        inputs over the horizon, static (B, S) -> forecasts (B, H), scaled."""
        anchor = self.anchor(inputs)  # (B, H)
        change = self._recurrent(inputs, known, static) if self.encoder is not None else torch.zeros_like(anchor)
        if self.skip is not None:
            linear = skip_change(self.skip, self.horizon_skip, self.layout, self.anchor_source, inputs, known, static)
            change = change + linear  # (B, H)
        return anchor + change

    def _recurrent(self, inputs: torch.Tensor, known: torch.Tensor | None, static: torch.Tensor | None) -> torch.Tensor:
        """What the encoder and the head add to the anchor: (B, L, C) -> (B, H)."""
        assert self.encoder is not None
        steps = inputs
        if self.static_embedding is not None:
            assert static is not None, "this network reads static covariates"
            embedded = self.static_embedding(static)  # (B, E)
            steps = torch.cat([inputs, embedded[:, None, :].expand(-1, inputs.shape[1], -1)], dim=-1)  # (B, L, C + E)
        if self.embed is not None:
            batch, length, channels = steps.shape
            segments = steps.reshape(batch, length // self.segment_length, self.segment_length * channels)
            steps = torch.relu(self.embed(segments))  # (B, L / S, hidden)
        encoded, _ = self.encoder(steps)  # (B, steps, hidden)
        context = self.dropout(encoded[:, -1])  # (B, hidden)
        head: torch.Tensor = self.head(context)  # (B, H)
        if self.decoder is not None:
            head = head + self.decoder(context, required_known(known))
        return head

    def loss(
        self,
        inputs: torch.Tensor,
        target: torch.Tensor,
        loss: LossName = "mse",
        weights: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        static: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The training loss in the scaled space; target (B, H)."""
        return forecast_loss(self(inputs, known, static), target, loss, weights)


class Ensemble(nn.Module):
    """Members of one shape, combined step by step; its weights are the members' under `members.N.`."""

    def __init__(
        self, config: NetworkConfig, layout: InputLayout | int, members: list[Forecaster] | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.layout = with_mask(config, layout)
        self.input_channels = self.layout.encoder_channels
        count = config.ensemble or 1
        built = members if members is not None else [Forecaster(config, self.layout) for _ in range(count)]
        self.members = nn.ModuleList(built)

    def forward(
        self, inputs: torch.Tensor, known: torch.Tensor | None = None, static: torch.Tensor | None = None
    ) -> torch.Tensor:
        """inputs (B, L, C), known (B, H, W), static (B, S) -> the members' combined forecasts (B, H), scaled."""
        forecasts = torch.stack([member(inputs, known, static) for member in self.members])  # (N, B, H)
        if self.config.combine == "mean":
            return forecasts.mean(dim=0)
        return forecasts.quantile(0.5, dim=0)  # interpolates between the middle two when N is even

    def anchor(self, inputs: torch.Tensor, observed: torch.Tensor | None = None) -> torch.Tensor:
        """The members' shared anchor alone: (B, L, C) -> (B, H), scaled."""
        first: Forecaster = self.members[0]  # type: ignore[assignment]
        return first.anchor(inputs, observed)


Network = Forecaster | Ensemble


def member_state(state: Mapping[str, torch.Tensor], member: int) -> dict[str, torch.Tensor]:
    """One member's weights out of an ensemble's state dict (an `Ensemble` holds them under
    `members.N.`), as a lone `Forecaster` names them."""
    prefix = f"members.{member}."
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}


def input_width_of(state: Mapping[str, torch.Tensor], config: NetworkConfig) -> int | None:
    """The values per time step the weights read, from the first layer that sees them: the
    segment embedding (segment_length steps of C channels each) or the encoder's input matrix.
    None when no weight depends on it (a network without the recurrent encoder reads the value
    alone). Every ensemble member must agree."""
    widths = set()
    for key, tensor in state.items():
        if key.endswith("embed.weight") and tensor.dim() == 2:
            segment = config.segment_length or 1
            widths.add(tensor.shape[1] // segment if tensor.shape[1] % segment == 0 else -1)
        elif key.endswith("encoder.weight_ih_l0") and tensor.dim() == 2 and not _has_embed(state, key):
            widths.add(tensor.shape[1])
    if len(widths) > 1 or -1 in widths:
        raise ValueError(f"the weights' first layers disagree on their input width ({sorted(widths)})")
    return widths.pop() if widths else None


def _has_embed(state: Mapping[str, torch.Tensor], encoder_key: str) -> bool:
    """With a segment embedding the encoder reads the embedding, not the channels."""
    return encoder_key.removesuffix("encoder.weight_ih_l0") + "embed.weight" in state


def build_network(config: NetworkConfig, layout: InputLayout | int) -> Network:
    """A single forecaster, or an ensemble of `config.ensemble` of them."""
    return Ensemble(config, layout) if (config.ensemble or 1) > 1 else Forecaster(config, layout)
