"""Evaluation: the model and the baselines are scored on the same origins and targets (an untrained
network, which is the naive forecast, scores exactly as naive), MASE is scaled by the training part
only, and the dashboard's samples show the input window that really preceded each origin."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from forecast.model.config import Architecture, NetworkConfig, ScalingParams
from forecast.model.intervals import calibrate
from forecast.model.network import Forecaster
from forecast.model.predictor import Predictor
from forecast.series.dataset import Dataset
from forecast.series.windows import Blocks, SeriesStore, build_store, split_blocks
from forecast.training.evaluate import BlockResult, evaluate_block, evaluation_set, mase_denominators, report_samples
from tests.factories import METRIC_NAMES, make_dataset, perturbed_network

INPUT_SIZE, HORIZON, VAL_SIZE, TEST_SIZE, SEASON = 8, 3, 6, 9, 24
FEATURES = ["hour_of_day"]
CHANNELS = 1 + 2 * len(FEATURES)
LENGTHS = [60, 75, 90]


@pytest.fixture
def dataset() -> Dataset:
    return make_dataset(LENGTHS)


@pytest.fixture
def store(dataset: Dataset) -> SeriesStore:
    return build_store(dataset, FEATURES)


@pytest.fixture
def blocks(store: SeriesStore) -> Blocks:
    return split_blocks(store, input_size=INPUT_SIZE, horizon=HORIZON, val_size=VAL_SIZE, test_size=TEST_SIZE)


def _config(arch: Architecture = "gru") -> NetworkConfig:
    return NetworkConfig(arch=arch, input_size=INPUT_SIZE, horizon=HORIZON, hidden_size=5)


def _predictor(network: Forecaster) -> Predictor:
    return Predictor(network, ScalingParams(mode="window"), torch.device("cpu"))


def _evaluate(network: Forecaster, store: SeriesStore, blocks: Blocks, block: str) -> BlockResult:
    evaluation = evaluation_set(store, blocks, season_length=SEASON, mase_period=SEASON, input_size=INPUT_SIZE)
    return evaluate_block(_predictor(network), evaluation, block)


@pytest.mark.parametrize("arch", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("block", ["validation", "test"])
def test_an_untrained_network_scores_exactly_as_naive(
    store: SeriesStore, blocks: Blocks, arch: Architecture, block: str
) -> None:
    torch.manual_seed(0)
    result = _evaluate(Forecaster(_config(arch), CHANNELS), store, blocks, block)

    assert set(result.metrics) == {"model", "naive", "seasonal_naive"}
    for metric in METRIC_NAMES:
        assert result.metrics["model"][metric] == pytest.approx(result.metrics["naive"][metric], abs=1e-9), metric
    values = store.values.numpy().astype(np.float64)
    np.testing.assert_array_equal(result.forecast, np.repeat(values[result.origins - 1][:, None], HORIZON, axis=1))


def test_a_network_that_is_not_naive_scores_differently(store: SeriesStore, blocks: Blocks) -> None:
    result = _evaluate(perturbed_network(_config(), CHANNELS), store, blocks, "test")
    assert result.metrics["model"]["mae"] != pytest.approx(result.metrics["naive"]["mae"], rel=1e-3)


def test_every_origin_of_the_block_is_scored_against_its_actual_values(store: SeriesStore, blocks: Blocks) -> None:
    result = _evaluate(Forecaster(_config(), CHANNELS), store, blocks, "test")
    per_series = TEST_SIZE - HORIZON + 1  # stride 1 inside the block
    assert len(result.origins) == per_series * len(LENGTHS)
    values = store.values.numpy().astype(np.float64)
    np.testing.assert_array_equal(result.actual, values[result.origins[:, None] + np.arange(HORIZON)])
    assert result.forecast.shape == result.actual.shape == (len(result.origins), HORIZON)
    assert result.spread.shape == (len(result.origins),) and np.all(result.spread > 0)


def test_each_blocks_mase_scale_reads_only_the_points_before_the_block(store: SeriesStore, blocks: Blocks) -> None:
    """Validation is scaled by the training part, test by training and validation: the history
    a forecaster had at the block, never the block itself (M4's in-sample scale)."""
    before = mase_denominators(store, blocks, period=SEASON)
    in_test = store.values.clone()
    for start, validation_end, end in zip(store.offsets[:-1], blocks.validation_end, store.offsets[1:], strict=True):
        in_test[start + validation_end : end] *= 100.0
    after_test = mase_denominators(replace(store, values=in_test), blocks, period=SEASON)
    for block in ("validation", "test"):
        np.testing.assert_array_equal(after_test[block], before[block])

    in_validation = store.values.clone()
    in_validation[int(blocks.validation_end[0]) - 1] += 50.0  # the last validation point of the first series
    after_validation = mase_denominators(replace(store, values=in_validation), blocks, period=SEASON)
    np.testing.assert_array_equal(after_validation["validation"], before["validation"])
    assert after_validation["test"][0] > before["test"][0]
    np.testing.assert_array_equal(after_validation["test"][1:], before["test"][1:])


def _samples(dataset: Dataset, store: SeriesStore, blocks: Blocks, **limits: int) -> list[dict]:
    result = _evaluate(Forecaster(_config(), CHANNELS), store, blocks, "test")
    calibration = calibrate(np.abs(np.random.default_rng(0).normal(size=(200, HORIZON))))
    samples = report_samples(dataset, store, result, calibration, input_size=INPUT_SIZE, **limits)
    return [sample.model_dump() for sample in samples]  # as report.json holds them


def test_report_samples_are_the_first_middle_and_last_test_origins_of_each_series(
    dataset: Dataset, store: SeriesStore, blocks: Blocks
) -> None:
    samples = _samples(dataset, store, blocks)
    for series, length in zip(dataset.series, LENGTHS, strict=True):
        origins = [sample["origin"] for sample in samples if sample["series_id"] == series.series_id]
        first, last = length - TEST_SIZE, length - HORIZON
        middle = first + (last - first + 1) // 2
        assert origins == [series.timestamps[position].isoformat() for position in (first, middle, last)]


def test_report_samples_show_the_window_that_preceded_each_origin(
    dataset: Dataset, store: SeriesStore, blocks: Blocks
) -> None:
    samples = _samples(dataset, store, blocks)
    assert samples
    by_id = {series.series_id: series for series in dataset.series}
    for sample in samples:
        series = by_id[sample["series_id"]]
        position = int(np.flatnonzero(series.timestamps == pd.Timestamp(str(sample["origin"])))[0])
        assert sample["history"] == series.values[position - INPUT_SIZE : position].tolist()
        assert sample["history_timestamps"] == [
            stamp.isoformat() for stamp in series.timestamps[position - INPUT_SIZE : position]
        ]
        assert sample["timestamps"] == [stamp.isoformat() for stamp in series.timestamps[position : position + HORIZON]]
        assert sample["actual"] == series.values[position : position + HORIZON].tolist()
        assert sample["forecast"] == [series.values[position - 1]] * HORIZON  # untrained: naive
        assert all(
            low < mean < high
            for low, mean, high in zip(sample["lower_80"], sample["forecast"], sample["upper_80"], strict=True)
        )


def test_report_samples_stop_at_max_series(dataset: Dataset, store: SeriesStore, blocks: Blocks) -> None:
    samples = _samples(dataset, store, blocks, max_series=2, per_series=2)
    ids = [sample["series_id"] for sample in samples]
    assert ids == ["s0", "s0", "s1", "s1"]
