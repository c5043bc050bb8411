"""What the training job decides about the network before fitting it, where the user left it
open: the anchor baseline (chosen on validation) and the recurrent segment length (from the
frequency). The manifest stores what was chosen, so serving rebuilds exactly this network."""

from __future__ import annotations

import logging

import numpy as np

from forecast.model.config import NetworkConfig
from forecast.series.frequency import cadence
from forecast.series.windows import block_origins, series_of_origins
from forecast.training.baselines import seasonal_naive
from forecast.training.evaluate import EvaluationSet
from forecast.training.metrics import forecast_metrics

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
    store, horizon = evaluation.store, network.horizon
    origins = block_origins(store, evaluation.blocks, "validation", input_size=network.input_size, horizon=horizon)
    series_index = series_of_origins(store, origins)
    starts = store.offsets[:-1][series_index]
    actual = evaluation.values[origins[:, None] + np.arange(horizon)]  # (W, H)
    forecast = seasonal_naive(evaluation.values, origins, horizon, period, starts)
    metrics = forecast_metrics(actual, forecast, evaluation.denominators[series_index])
    mase = metrics["mase"]
    return float(mase if mase is not None else metrics["mae"] or 0.0)


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
