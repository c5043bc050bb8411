"""What the training job decides about the network before fitting it, where the user left it
open: the anchor baseline (chosen on validation) and the recurrent segment length (from the
frequency). The manifest stores what was chosen, so serving rebuilds exactly this network."""

from __future__ import annotations

import logging

from forecast.model.config import NetworkConfig
from forecast.series.frequency import cadence
from forecast.training.baselines import seasonal_naive
from forecast.training.evaluate import EvaluationSet, block_windows
from forecast.training.metrics import forecast_metrics
from forecast.training.promotion import promotion_score

logger = logging.getLogger(__name__)

# Three members, combined by their mean: on M4 Hourly about 0.07 OWA better than one member, in
# about three times one member's minute (bench/accuracy.py).
DEFAULT_ENSEMBLE = 3


def default_segment_length(freq: str, input_size: int) -> int:
    """The frequency's season (a day of hourly data) when it divides the window into at least two
    segments; point by point otherwise."""
    season = cadence(freq).season_length
    return season if season > 1 and input_size % season == 0 and input_size // season >= 2 else 1


def anchor_error(evaluation: EvaluationSet, network: NetworkConfig, period: int) -> float:
    """Validation error of the baseline that repeats the value `period` steps back: MASE, or MAE
    where MASE is undefined (every history constant)."""
    horizon = network.horizon
    windows = block_windows(evaluation, "validation", input_size=network.input_size, horizon=horizon)
    forecast = seasonal_naive(evaluation.values, windows.origins, horizon, period, windows.series_starts)
    return promotion_score(forecast_metrics(windows.actual, forecast, windows.denominators)).value


def choose_anchor(evaluation: EvaluationSet, network: NetworkConfig, freq: str) -> int:
    """The best of the naive forecast and a seasonal naive for each natural cycle the input window
    covers (hourly data with a week of input: a day and a week), on the validation block."""
    candidates = [1, *(cycle for cycle in cadence(freq).cycles if cycle <= network.input_size)]
    errors = {period: anchor_error(evaluation, network, period) for period in dict.fromkeys(candidates)}
    chosen = min(errors, key=errors.__getitem__)
    logger.info("anchor: validation error by period %s; chose %d", errors, chosen)
    return chosen


def resolve_network(network: NetworkConfig, evaluation: EvaluationSet, freq: str) -> NetworkConfig:
    """The network with every open choice made."""
    updates: dict[str, int] = {}
    if network.segment_length is None:
        updates["segment_length"] = default_segment_length(freq, network.input_size)
    if network.ensemble is None:
        updates["ensemble"] = DEFAULT_ENSEMBLE
    if network.anchor_period is None:
        updates["anchor_period"] = choose_anchor(evaluation, network, freq)
    return network.model_copy(update=updates) if updates else network
