"""What the training job decides about the network where the user left it open: the input size
(from the frequency and the history), the anchor's candidates (chosen among once the scaling is
fitted, forecast.training.anchor_choice), the recurrent segment length (from the frequency), the
ensemble and the scaling. The manifest stores what was chosen, so serving rebuilds exactly this
network."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from forecast.model.config import AnchorKind, NetworkConfig, ScalingMode
from forecast.series.frequency import cadence
from forecast.training.evaluate import EvaluationSet

logger = logging.getLogger(__name__)

# Three members, combined by their mean: on M4 Hourly about 0.07 OWA better than one member, in
# about three times one member's minute (bench/accuracy.py).
DEFAULT_ENSEMBLE = 3


def default_segment_length(freq: str, input_size: int) -> int:
    """The frequency's season (a day of hourly data) when it divides the window into at least two
    segments; point by point otherwise."""
    season = cadence(freq).season_length
    return season if season > 1 and input_size % season == 0 and input_size // season >= 2 else 1


def default_input_size(freq: str, horizon: int, history: int, *, val_size: int, test_size: int) -> int:
    """The window when the user leaves it open: three seasons, or the longest natural cycle up to
    eight seasons when it is longer (a week of hourly data: 168, M4 Hourly's window), or without a
    season three horizons; no longer than leaves the median series (`history` points) a training
    window before its validation and test blocks, and never under the season nor the horizon
    where the history allows. Also three horizons for seasonal data was measured and lost on
    quarterly, monthly and US employment data (bench/collection.py, docs/benchmarks.md)."""
    cycle = cadence(freq)
    season = cycle.season_length
    longer_cycles = [c for c in cycle.cycles if season < c <= 8 * season]
    wanted = max([3 * season, *longer_cycles]) if season > 1 else 3 * horizon
    shortest = season if season > 1 else horizon
    room = history - val_size - test_size - horizon
    return max(1, min(wanted, max(room, shortest)))


def default_scaling(series_count: int) -> ScalingMode:
    """One series: one scale, fitted on its training part (`global`), so an offset or a drift the
    network learns is in the series' units, as NLinear and DLinear fit ETTh1. Several: each
    window's own (`window`), so series of any size share one scale-free model.

    On one series, a bias in units of each window's spread is a drift that varies with the
    window's volatility: on ETTh1's OT at H=96 the same ridge skip scores MSE 0.0536 against
    0.0528 with the bias in the series' units (and 0.0541 against 0.0530 through the whole job,
    bench/accuracy.py); five of ETTh1's seven columns do better or the same with `global`."""
    return "global" if series_count == 1 else "window"


# The anchor is chosen on every origin whose horizon ends in the validation block or in this many
# horizons of training data before it (forecast.training.anchor_choice): one block's few origins
# (one per series when the block is a horizon long) mislead.
CHOICE_HORIZONS = 2


@dataclass(frozen=True, slots=True)
class AnchorChoice:
    """A candidate anchor: the kind, its period (the repeated or the adjusted season), and for one
    that stands in alone, how far back it reads (None: the network's input size)."""

    kind: AnchorKind
    period: int
    lookback: int | None = None


# A seasonal fitted anchor that stands in alone also reads this many times the network's window.
# Drift and Theta with the season taken out estimate the season from what they read, and a window
# of a few seasons is too little for that: on the monthly sets of bench/collection.py, Theta
# alone scored OWA 1.61 on 36 months and 0.71 on 72, on single monthly series 1.43 and 0.65
# (AutoTheta, which reads the whole series, 0.67); on quarterly tourism 0.96 on 16 quarters and
# 0.94 on 32; on weekly data 0.98 on 52 weeks and 0.94 on 104. Four windows back was worse than
# two on every one of these sets, and without a season (yearly data) reading further back only
# flattened the recent trend (Theta 0.92 on 12 years, 0.96 on 48).
_STAND_IN_LOOKBACKS = (2,)
# The autoregressive anchor that may stand in: `combined`, the mean of the autoregression on the
# values, the one on the steps and the Theta. On the yearly set of bench/collection.py, where
# AutoARIMA's per-series cycles (sunspots, lynx) win, it took the product from OWA 0.918 to 0.638
# (0.905 to 0.634 with the input size left to the job). Neither autoregression stands in alone:
# chosen on the last origins, the one on the values pulled wandering daily series back to their
# mean (hidden days 0.683 against the Theta's 0.570), the one on the steps lost on single monthly
# series (0.693 against 0.656 when only the combination was offered); inside the combination
# each is one voice of three, as in M4's combination benchmark.
STAND_IN_AUTOREGRESSIONS: tuple[AnchorKind, ...] = ("combined",)
# An autoregression estimates its lags from what it reads, with or without a season: a cycle of
# ten years needs several of them. Alone, on the hidden points of the yearly set, the
# combination scored OWA 0.83 on 12 years, 0.71 on 24 and 0.64 on 48; on the quarterly set 0.76,
# 0.73 and 0.69 on 16, 32 and 64 quarters.
_AUTOREGRESSION_LOOKBACKS = (2, 4)


def stand_in_candidates(candidates: list[AnchorChoice], input_size: int, history: int) -> list[AnchorChoice]:
    """The candidates to stand in alone for a network that loses the gate: every one, each fitted
    one with a season (drift, Theta) also reading two windows back, and the combination with its
    autoregressions two and four windows back, where the median series' history (`history`)
    reaches that far."""
    longer = [
        replace(candidate, lookback=factor * input_size)
        for candidate in candidates
        for factor in _lookbacks(candidate)
        if factor * input_size <= history
    ]
    return [*candidates, *longer]


def _lookbacks(candidate: AnchorChoice) -> tuple[int, ...]:
    if candidate.kind in STAND_IN_AUTOREGRESSIONS:
        return _AUTOREGRESSION_LOOKBACKS
    return _STAND_IN_LOOKBACKS if candidate.kind != "repeat" and candidate.period > 1 else ()


def anchor_candidates(freq: str, input_size: int, kind: AnchorKind | None = None) -> list[AnchorChoice]:
    """The naive forecast, a seasonal naive for each natural cycle the window covers (hourly data
    with a week of input: a day and a week), and the drift, the Theta and the combination of Theta
    and autoregressions, with the season taken out where the window covers two of them; of one
    `kind` when the user fixed it (an autoregression alone, which is not offered otherwise,
    included)."""
    cycle = cadence(freq)
    repeats = dict.fromkeys([1, *(c for c in cycle.cycles if c <= input_size)])
    season = cycle.season_length if 1 < cycle.season_length <= input_size // 2 else 1
    offered = [
        *(AnchorChoice("repeat", period) for period in repeats),
        AnchorChoice("drift", season),
        AnchorChoice("theta", season),
        *(AnchorChoice(fitted, season) for fitted in STAND_IN_AUTOREGRESSIONS),
    ]
    if kind is None:
        return offered
    return [c for c in offered if c.kind == kind] or [AnchorChoice(kind, season)]


def default_horizon_inputs(has_future_covariates: bool) -> bool:
    """Whether the horizon's future-known inputs reach the head and the skip: when the version has
    future-known covariates (they are what those inputs are for, and the calendar's steps go with
    them); not for the calendar alone, which the anchor and the encoder already follow. On M4
    Hourly one LSTM scored OWA 0.515 with the calendar's horizon read, 0.508 without
    (bench/accuracy.py, ablations `single` and `no_horizon_inputs`)."""
    return has_future_covariates


def resolve_network(
    network: NetworkConfig,
    evaluation: EvaluationSet,
    freq: str,
    *,
    has_future_covariates: bool = False,
    has_gaps: bool = False,
) -> NetworkConfig:
    """The network with every open choice made. The mask of missing points is read when the data
    has gaps or padded series: on complete data it would be a constant channel, and the versions
    trained on it stay as they were."""
    updates: dict[str, int | bool | str] = {}
    if network.missing_mask is None and has_gaps:
        updates["missing_mask"] = True
    if network.segment_length is None:
        updates["segment_length"] = default_segment_length(freq, network.input_size)
    if network.ensemble is None:
        updates["ensemble"] = DEFAULT_ENSEMBLE
    if network.horizon_inputs is None:
        updates["horizon_inputs"] = default_horizon_inputs(has_future_covariates)
    if network.anchor is None and network.anchor_period is not None:
        updates["anchor"] = "repeat"  # a period given alone: the value it repeats
    # Left open, the anchor is chosen once the scaling is fitted (forecast.training.anchor_choice).
    return network.model_copy(update=updates) if updates else network
