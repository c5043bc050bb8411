"""What the training job decides about the network before fitting it, where the user left it
open: the anchor baseline (chosen on validation) and the recurrent segment length (from the
frequency). The manifest stores what was chosen, so serving rebuilds exactly this network."""

from __future__ import annotations

import logging

from forecast.model.config import NetworkConfig, ScalingMode
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


def default_scaling(series_count: int) -> ScalingMode:
    """One series: one scale, fitted on its training part (`global`), so an offset or a drift the
    network learns is in the series' units, as NLinear and DLinear fit ETTh1. Several: each
    window's own (`window`), so series of any size share one scale-free model.

    On one series, a bias in units of each window's spread is a drift that varies with the
    window's volatility: on ETTh1's OT at H=96 the same ridge skip scores MSE 0.0536 against
    0.0528 with the bias in the series' units (and 0.0541 against 0.0530 through the whole job,
    bench/accuracy.py); five of ETTh1's seven columns do better or the same with `global`."""
    return "global" if series_count == 1 else "window"


def anchor_error(evaluation: EvaluationSet, network: NetworkConfig, period: int) -> float:
    """Validation error of the baseline that repeats the value `period` steps back: MASE, or MAE
    where MASE is undefined (every history constant)."""
    horizon = network.horizon
    windows = block_windows(evaluation, "validation", input_size=network.input_size, horizon=horizon)
    forecast = seasonal_naive(evaluation.filled, windows.origins, horizon, period, windows.series_starts)
    return promotion_score(forecast_metrics(windows.actual, forecast, windows.denominators)).value


def choose_anchor(evaluation: EvaluationSet, network: NetworkConfig, freq: str) -> int:
    """The best of the naive forecast and a seasonal naive for each natural cycle the input window
    covers (hourly data with a week of input: a day and a week), on the validation block."""
    candidates = [1, *(cycle for cycle in cadence(freq).cycles if cycle <= network.input_size)]
    errors = {period: anchor_error(evaluation, network, period) for period in dict.fromkeys(candidates)}
    chosen = min(errors, key=errors.__getitem__)
    logger.info("anchor: validation error by period %s; chose %d", errors, chosen)
    return chosen


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
    updates: dict[str, int | bool] = {}
    if network.missing_mask is None and has_gaps:
        updates["missing_mask"] = True
    if network.segment_length is None:
        updates["segment_length"] = default_segment_length(freq, network.input_size)
    if network.ensemble is None:
        updates["ensemble"] = DEFAULT_ENSEMBLE
    if network.horizon_inputs is None:
        updates["horizon_inputs"] = default_horizon_inputs(has_future_covariates)
    if network.anchor_period is None:
        updates["anchor_period"] = choose_anchor(evaluation, network, freq)
    return network.model_copy(update=updates) if updates else network
