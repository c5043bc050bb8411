"""What the job decides before fitting: the anchor is the baseline that wins on the last origins
before the test block (a daily cycle picks the day, a random walk the last value, a trend the
drift or Theta), and the segment length is the season when it divides the window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from forecast.config.training import TrainingConfig
from forecast.model.config import InputLayout, NetworkConfig, ScalingParams
from forecast.series.dataset import Dataset, Series
from forecast.series.windows import build_store, split_blocks
from forecast.training.anchor_choice import choose_network_anchor, choose_stand_in
from forecast.training.choices import (
    AnchorChoice,
    anchor_candidates,
    default_input_size,
    default_segment_length,
    resolve_network,
    stand_in_candidates,
)
from forecast.training.evaluate import EvaluationSet, evaluation_set
from forecast.training.loop import Objective

INPUT_SIZE, HORIZON = 168, 24


def _evaluation(values: list[np.ndarray], input_size: int = INPUT_SIZE):  # type: ignore[no-untyped-def]
    stamps = [pd.date_range("2024-01-01", periods=len(v), freq="h") for v in values]
    dataset = Dataset([Series(f"s{i}", s, v) for i, (s, v) in enumerate(zip(stamps, values, strict=True))], "h", "t")
    store = build_store(dataset, [])
    blocks = split_blocks(store, input_size=input_size, horizon=HORIZON, val_size=96, test_size=48)
    return evaluation_set(store, blocks, season_length=24, mase_period=24, input_size=input_size)


NETWORK = NetworkConfig(arch="gru", input_size=INPUT_SIZE, horizon=HORIZON)


def _every(origins: np.ndarray) -> np.ndarray:
    return origins


@dataclass(frozen=True)
class Choices:
    network: AnchorChoice  # the network's anchor
    alone: AnchorChoice  # the one that would stand in for a network that loses the gate


def choose_anchors(network: NetworkConfig, candidates: list[AnchorChoice], evaluation: EvaluationSet) -> Choices:
    """The job's two choices on the last origins: the network's anchor (its linear part's loss)
    and the best anchor alone."""
    objective = Objective.of("mae", ScalingParams(mode="window"), evaluation.denominators["train"])
    own = [c for c in candidates if c.lookback is None]
    return Choices(
        choose_network_anchor(network, own, InputLayout(), evaluation, objective, 0, _every),
        choose_stand_in(network, candidates, InputLayout(), evaluation, objective, _every),
    )


def choose(evaluation: EvaluationSet, network: NetworkConfig, freq: str) -> Choices:
    return choose_anchors(network, anchor_candidates(freq, network.input_size, network.anchor), evaluation)


def choose_anchor(evaluation: EvaluationSet, network: NetworkConfig, freq: str) -> AnchorChoice:
    return choose(evaluation, network, freq).network


def test_a_daily_cycle_anchors_on_the_day() -> None:
    """A daily cycle on a wandering level: alone, the best anchor follows the day (with the skip,
    any repeat does: the skip carries the cycle)."""
    rng = np.random.default_rng(0)
    steps = np.arange(900)
    level = [rng.normal(0, 0.3, 900).cumsum() for _ in range(3)]  # wanders: a week back is further off
    values = [10 + 5 * np.sin(2 * np.pi * steps / 24 + k) + level[k] for k in range(3)]
    chosen = choose(_evaluation(values), NETWORK, "h")
    assert chosen.alone.period == 24 and chosen.network.kind == "repeat"


def test_a_weekly_cycle_anchors_on_the_week_before() -> None:
    rng = np.random.default_rng(1)
    steps = np.arange(900)
    week = np.where((steps // 24) % 7 < 5, 10.0, 2.0)  # workdays and weekends
    values = [week * (1 + 0.1 * np.sin(2 * np.pi * steps / 24)) + rng.normal(0, 0.1, 900) for _ in range(2)]
    assert choose_anchor(_evaluation(values), NETWORK, "h") == AnchorChoice("repeat", 168)


def test_a_random_walk_anchors_on_the_last_value() -> None:
    rng = np.random.default_rng(2)
    values = [100 + rng.normal(0, 1, 900).cumsum() for _ in range(3)]
    assert choose_anchor(_evaluation(values), NETWORK, "h") == AnchorChoice("repeat", 1)


def test_a_trend_is_followed_by_the_anchor_that_stands_in_for_the_network() -> None:
    """Trending series (a noisy line under a daily cycle): alone, repeating any value falls
    behind, and a baseline with a trend (the drift, the Theta, their combination with the
    autoregressions) is the best; the network's anchor repeats a value (its skip carries the trend)."""
    rng = np.random.default_rng(4)
    steps = np.arange(900)
    values = [50 + 0.2 * k * steps + 3 * np.sin(2 * np.pi * steps / 24) + rng.normal(0, 0.5, 900) for k in (1, 2, 3)]
    chosen = choose(_evaluation(values), NETWORK, "h")
    assert chosen.alone.kind in ("drift", "theta", "combined") and chosen.alone.period == 24
    assert chosen.network.kind == "repeat"


def test_a_stand_in_reads_further_back_where_a_short_window_cannot_estimate_the_season() -> None:
    """A noisy daily cycle, and a network window of two days: a fitted anchor cannot take the
    season out of two days (the centred moving average leaves one), out of four it can, and
    then beats repeating yesterday's noise. The anchor that stands in alone reads further back
    than the network, where the history reaches."""
    rng = np.random.default_rng(6)
    steps = np.arange(900)
    values = [20 + 5 * np.sin(2 * np.pi * steps / 24 + k) + rng.normal(0, 1, 900) for k in range(3)]
    network = NETWORK.model_copy(update={"input_size": 48})
    evaluation = _evaluation(values)
    candidates = stand_in_candidates(anchor_candidates("h", 48), 48, history=900)
    reading = {(c.kind, c.lookback) for c in candidates}
    assert {lookback for kind, lookback in reading if kind in ("drift", "theta")} == {None, 96}
    assert {lookback for kind, lookback in reading if kind == "combined"} == {None, 96, 192}
    assert {c.lookback for c in stand_in_candidates(anchor_candidates("h", 48), 48, history=80)} == {None}
    # without a season only the autoregressions read further back (their lags need the points)
    yearly = stand_in_candidates(anchor_candidates("YS", 12), 12, history=80)
    assert {(c.kind, c.lookback) for c in yearly if c.lookback} == {("combined", 24), ("combined", 48)}
    chosen = choose_anchors(network, candidates, evaluation)
    assert chosen.alone.kind != "repeat" and chosen.alone.lookback in (96, 192), chosen
    assert chosen.network.lookback is None, "the network reads its own window"


def test_a_cycle_no_calendar_names_is_followed_by_the_combination_that_stands_in() -> None:
    """Cycles of 10.7 steps (sunspots' kind of cycle, which no calendar names) under noise: the
    seasonal naive of the day is off phase and the Theta flattens them; the combination with
    the window's own autoregressions continues them, reading further back than the network."""
    rng = np.random.default_rng(9)
    steps = np.arange(900)
    values = [20 + 5 * np.sin(2 * np.pi * steps / 10.7 + k) + rng.normal(0, 0.5, 900) for k in range(3)]
    network = NETWORK.model_copy(update={"input_size": 24})
    evaluation = _evaluation(values, input_size=24)
    candidates = stand_in_candidates(anchor_candidates("h", 24), 24, history=900)
    chosen = choose_anchors(network, candidates, evaluation)
    assert chosen.alone.kind == "combined" and chosen.alone.lookback in (48, 96), chosen


@pytest.mark.parametrize("kind", ["ar", "ari"])
def test_an_autoregression_the_user_fixes_is_the_networks_anchor_and_its_stand_in(kind: str) -> None:
    """Not offered when the anchor is left open, an autoregression is still the user's to fix."""
    rng = np.random.default_rng(10)
    values = [10 + rng.normal(0, 1, 900).cumsum() for _ in range(2)]
    chosen = choose(_evaluation(values), NETWORK.model_copy(update={"anchor": kind}), "h")
    assert chosen.network.kind == kind and chosen.alone.kind == kind


def test_a_given_anchor_kind_gets_its_best_period() -> None:
    rng = np.random.default_rng(5)
    steps = np.arange(900)
    values = [10 + 5 * np.sin(2 * np.pi * steps / 24) + rng.normal(0, 0.3, 900).cumsum() for _ in range(2)]
    theta = NETWORK.model_copy(update={"anchor": "theta"})
    assert choose_anchor(_evaluation(values), theta, "h") == AnchorChoice("theta", 24)


@pytest.mark.parametrize(
    ("freq", "input_size", "expected"),
    [("h", 168, 24), ("h", 336, 24), ("h", 36, 1), ("h", 24, 1), ("D", 28, 7), ("MS", 24, 12), ("YS", 10, 1)],
)
def test_the_segment_length_is_the_season_when_it_divides_the_window(freq: str, input_size: int, expected: int) -> None:
    assert default_segment_length(freq, input_size) == expected


def test_choices_the_user_made_are_kept() -> None:
    rng = np.random.default_rng(3)
    values = [100 + rng.normal(0, 1, 900).cumsum()]
    chosen = NETWORK.model_copy(
        update={"anchor_period": 168, "segment_length": 8, "ensemble": 2, "horizon_inputs": False}
    )
    # a period given alone repeats that value, as before the other anchors
    assert resolve_network(chosen, _evaluation(values), "h") == chosen.model_copy(update={"anchor": "repeat"})
    resolved = resolve_network(NETWORK, _evaluation(values), "h")
    # the anchor left open is chosen by the fit, once the scaling is known (anchor_choice)
    assert (resolved.anchor, resolved.anchor_period, resolved.segment_length, resolved.ensemble) == (None, None, 24, 3)


@pytest.mark.parametrize(
    ("freq", "horizon", "history", "expected"),
    [
        ("h", 48, 700, 168),  # a week of hourly data, M4 Hourly's window
        ("30min", 48, 4000, 336),
        ("D", 14, 365, 21),  # three weeks
        ("MS", 18, 200, 36),  # three years
        ("QS", 8, 100, 12),
        ("YS", 6, 40, 18),  # no season: three horizons
        ("YS", 6, 25, 7),  # as long as leaves the median series a training window
        ("MS", 18, 40, 12),  # never under the season
    ],
)
def test_the_input_size_left_open_fits_the_frequency_and_the_history(
    freq: str, horizon: int, history: int, expected: int
) -> None:
    assert default_input_size(freq, horizon, history, val_size=horizon, test_size=horizon) == expected


def test_a_segment_length_or_anchor_period_given_without_an_input_size_is_kept() -> None:
    """Left open, the input size is provisional until the job picks one: a segment length or an
    anchor period given beside it is not refused for it, and the pick fits them."""
    config = TrainingConfig.model_validate({"arch": "gru", "horizon": 24, "segment_length": 24, "anchor_period": 24})
    assert config.input_size_picked and config.input_size_fits == 24
    config = TrainingConfig.model_validate({"arch": "gru", "horizon": 24, "segment_length": 8, "anchor_period": 20})
    assert config.input_size_fits == 24  # the shortest window 8 divides that a 20-step period fits in
