"""What the job decides before fitting: the anchor is the baseline that wins on validation (a
daily cycle picks the day, a random walk the last value), and the segment length is the season
when it divides the window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecast.model.config import NetworkConfig
from forecast.series.dataset import Dataset, Series
from forecast.series.windows import build_store, split_blocks
from forecast.training.choices import choose_anchor, default_segment_length, resolve_network
from forecast.training.evaluate import evaluation_set

INPUT_SIZE, HORIZON = 168, 24


def _evaluation(values: list[np.ndarray]):  # type: ignore[no-untyped-def]
    stamps = [pd.date_range("2024-01-01", periods=len(v), freq="h") for v in values]
    dataset = Dataset([Series(f"s{i}", s, v) for i, (s, v) in enumerate(zip(stamps, values, strict=True))], "h", "t")
    store = build_store(dataset, [])
    blocks = split_blocks(store, input_size=INPUT_SIZE, horizon=HORIZON, val_size=96, test_size=48)
    return evaluation_set(store, blocks, season_length=24, mase_period=24)


NETWORK = NetworkConfig(arch="gru", input_size=INPUT_SIZE, horizon=HORIZON)


def test_a_daily_cycle_anchors_on_the_day_before() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(900)
    level = [rng.normal(0, 0.3, 900).cumsum() for _ in range(3)]  # wanders: a week back is further off
    values = [10 + 5 * np.sin(2 * np.pi * steps / 24 + k) + level[k] for k in range(3)]
    assert choose_anchor(_evaluation(values), NETWORK, "h") == 24


def test_a_weekly_cycle_anchors_on_the_week_before() -> None:
    rng = np.random.default_rng(1)
    steps = np.arange(900)
    week = np.where((steps // 24) % 7 < 5, 10.0, 2.0)  # workdays and weekends
    values = [week * (1 + 0.1 * np.sin(2 * np.pi * steps / 24)) + rng.normal(0, 0.1, 900) for _ in range(2)]
    assert choose_anchor(_evaluation(values), NETWORK, "h") == 168


def test_a_random_walk_anchors_on_the_last_value() -> None:
    rng = np.random.default_rng(2)
    values = [100 + rng.normal(0, 1, 900).cumsum() for _ in range(3)]
    assert choose_anchor(_evaluation(values), NETWORK, "h") == 1


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
    assert resolve_network(chosen, _evaluation(values), "h") == chosen
    resolved = resolve_network(NETWORK, _evaluation(values), "h")
    assert (resolved.anchor_period, resolved.segment_length, resolved.ensemble) == (1, 24, 3)
