"""Evaluation of a predictor on a block (validation or test) over every forecast origin, beside
the naive and seasonal-naive baselines, on the data's original scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecast.model.intervals import Calibration, interval_bounds
from forecast.model.predictor import Predictor
from forecast.registry.report import ReportSample
from forecast.scoring.baselines import History, filled_history, naive, seasonal_naive
from forecast.scoring.metrics import denominators_before, forecast_metrics
from forecast.series.dataset import Dataset
from forecast.series.windows import Blocks, SeriesStore, block_origins, series_of_origins
from forecast.training.batches import gather_windows

_CHUNK = 8192


@dataclass(slots=True)
class BlockResult:
    origins: np.ndarray  # (W,) absolute
    actual: np.ndarray  # (W, H)
    forecast: np.ndarray  # (W, H)
    spread: np.ndarray  # (W,)
    metrics: dict[str, dict[str, float | None]]  # method -> metric -> value (None: undefined)


@dataclass(slots=True)
class EvaluationSet:
    """The data every version of one training job is scored on, built once: the new version
    and the production version it is compared with see the same windows and denominators."""

    store: SeriesStore
    blocks: Blocks
    values: np.ndarray  # (N,) float64 copy of the store's values, NaN where missing
    # (S,) MASE denominators of each block: the series' points before the block, as M4 scales by
    # the history a forecaster had (validation: the training part; test: training and validation)
    denominators: dict[str, np.ndarray]
    season_length: int
    # the values with each series' gaps filled as a window ending at an origin fills them
    # (`forecast.model.missing`): what the naive and seasonal-naive baselines repeat
    filled: History
    first_observed: np.ndarray  # (S,) absolute position of each series' first observed point
    # The job's input window: the origins every version is scored at, whatever it reads (one that
    # reads further back than a series holds reads the points before its start as missing).
    input_size: int


def mase_denominators(store: SeriesStore, blocks: Blocks, period: int) -> dict[str, np.ndarray]:
    """(S,) MASE denominators per block, each from the series' points before the block."""
    values = store.values.numpy().astype(np.float64)
    return {
        "train": denominators_before(values, store.offsets, blocks.train_end, period),
        "validation": denominators_before(values, store.offsets, blocks.train_end, period),
        "test": denominators_before(values, store.offsets, blocks.validation_end, period),
    }


def evaluation_set(
    store: SeriesStore, blocks: Blocks, *, season_length: int, mase_period: int, input_size: int
) -> EvaluationSet:
    values = store.values.numpy().astype(np.float64)
    filled, first_observed = History.complete(values), store.offsets[:-1]
    if store.observed_before is not None:
        filled, first_observed = filled_history(values, store.offsets)
    denominators = mase_denominators(store, blocks, mase_period)
    return EvaluationSet(store, blocks, values, denominators, season_length, filled, first_observed, input_size)


def predict_origins(predictor: Predictor, store: SeriesStore, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts (W, H) and window scales (W,) for absolute origins, gathered chunk by chunk."""
    config = predictor.config
    means, spreads = [], []
    for start in range(0, len(origins), _CHUNK):
        batch = gather_windows(store, origins[start : start + _CHUNK], config)
        prediction = predictor.predict(batch.windows)
        means.append(prediction.mean)
        spreads.append(prediction.spread)
    return np.concatenate(means), np.concatenate(spreads)


@dataclass(slots=True)
class BlockWindows:
    """Every forecast origin of a block with what scoring a forecast there needs."""

    origins: np.ndarray  # (W,) absolute
    actual: np.ndarray  # (W, H)
    series_starts: np.ndarray  # (W,) absolute position of the first observed point of each origin's series
    denominators: np.ndarray  # (W,) MASE denominator of each origin's series


def block_windows(evaluation: EvaluationSet, block: str, *, input_size: int, horizon: int) -> BlockWindows:
    store = evaluation.store
    origins = block_origins(store, evaluation.blocks, block, input_size=input_size, horizon=horizon)
    series_index = series_of_origins(store, origins)
    return BlockWindows(
        origins=origins,
        actual=evaluation.values[origins[:, None] + np.arange(horizon)],  # (W, H)
        series_starts=evaluation.first_observed[series_index],
        denominators=evaluation.denominators[block][series_index],
    )


def evaluate_block(predictor: Predictor, evaluation: EvaluationSet, block: str) -> BlockResult:
    config, values = predictor.config, evaluation.filled
    windows = block_windows(evaluation, block, input_size=evaluation.input_size, horizon=config.horizon)
    origins = windows.origins
    forecast, spread = predict_origins(predictor, evaluation.store, origins)
    methods = {
        "model": forecast,
        "naive": naive(values, origins, config.horizon),
        "seasonal_naive": seasonal_naive(
            values, origins, config.horizon, evaluation.season_length, windows.series_starts
        ),
    }
    metrics = {
        method: forecast_metrics(windows.actual, predicted, windows.denominators)
        for method, predicted in methods.items()
    }
    return BlockResult(origins=origins, actual=windows.actual, forecast=forecast, spread=spread, metrics=metrics)


def report_samples(
    dataset: Dataset,
    store: SeriesStore,
    result: BlockResult,
    calibration: Calibration,
    *,
    input_size: int,
    max_series: int = 6,
    per_series: int = 3,
) -> list[ReportSample]:
    """Actual vs forecast at a few test origins (first, middle, last) of each of the first
    `max_series` series, for the dashboard."""
    series_index = series_of_origins(store, result.origins)
    samples: list[ReportSample] = []
    lower, upper = interval_bounds(result.forecast, result.spread, calibration, 80.0)
    for index in range(min(max_series, len(dataset.series))):
        rows = np.flatnonzero(series_index == index)
        if len(rows) == 0:
            continue
        picks = sorted({int(rows[0]), int(rows[len(rows) // 2]), int(rows[-1])})[:per_series]
        series = dataset.series[index]
        for row in picks:
            position = int(result.origins[row] - store.offsets[index])
            context = slice(max(0, position - input_size), position)
            horizon = result.forecast.shape[1]
            samples.append(
                ReportSample(
                    series_id=series.series_id,
                    origin=series.timestamps[position].isoformat(),
                    history_timestamps=[t.isoformat() for t in series.timestamps[context]],
                    history=_numbers(series.values[context]),
                    timestamps=[t.isoformat() for t in series.timestamps[position : position + horizon]],
                    actual=_numbers(result.actual[row]),
                    forecast=[round(float(v), 6) for v in result.forecast[row]],
                    lower_80=[round(float(v), 6) for v in lower[row]],
                    upper_80=[round(float(v), 6) for v in upper[row]],
                )
            )
    return samples


def _numbers(values: np.ndarray) -> list[float | None]:
    """Values for JSON: null where one is missing."""
    return [round(float(v), 6) if np.isfinite(v) else None for v in values]
