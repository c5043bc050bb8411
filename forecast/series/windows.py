"""Windows as index arithmetic over the stored series: nothing of size data x input_size exists.

All series are concatenated into one array; a window is identified by its origin, the
absolute position of its first target point. A batch of windows is gathered on demand from a
batch of origins, so peak memory follows the data (one int64 per origin), not the windows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from forecast.errors import InvalidInput
from forecast.series.dataset import Dataset, Series, SeriesTooShort
from forecast.series.features import calendar_features


@dataclass(slots=True)
class SeriesStore:
    values: torch.Tensor  # (N,) float32, every series end to end
    features: torch.Tensor  # (N, F) float32 calendar features of each point
    offsets: np.ndarray  # (S + 1,) int64: series s occupies [offsets[s], offsets[s + 1])
    series_ids: list[str]
    past: torch.Tensor  # (N, P) float64 raw past covariates of each point
    future: torch.Tensor  # (N, K) float64 raw future-known covariates of each point
    # (S, W) float64: each series' static input (codes, then raw numbers); the training job fills it
    # in once the categories are known.
    static: torch.Tensor
    # (N + 1,) int64: observed points before each position (None: every point is observed), so a
    # window's count of observed points is one subtraction
    observed_before: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def observed_between(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Observed points in [start, end) of the concatenated values, for each pair."""
        if self.observed_before is None:
            return end - start
        return self.observed_before[end] - self.observed_before[start]


@dataclass(slots=True)
class Blocks:
    """Per-series block boundaries, relative to each series' start: [0, train_end) is training."""

    train_end: np.ndarray  # (S,) int64
    validation_end: np.ndarray  # (S,) int64; the test block is [validation_end, length)


def build_store(dataset: Dataset, feature_names: list[str]) -> SeriesStore:
    lengths = np.array([len(s) for s in dataset.series], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate([s.values for s in dataset.series]).astype(np.float32)
    features = np.concatenate([calendar_features(s.timestamps, feature_names) for s in dataset.series])
    # float64, as served covariates are: standardised in float64 on both paths, so a covariate at
    # 1e7 with a spread of 6 reaches the network with the same inputs in training and serving.
    past = np.concatenate([s.past_values for s in dataset.series]).astype(np.float64)
    future = np.concatenate([s.future_values for s in dataset.series]).astype(np.float64)
    observed = np.isfinite(values)
    observed_before = None if observed.all() else np.concatenate([[0], np.cumsum(observed)]).astype(np.int64)
    return SeriesStore(
        values=torch.from_numpy(values),
        features=torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
        offsets=offsets,
        series_ids=[s.series_id for s in dataset.series],
        past=torch.from_numpy(np.ascontiguousarray(past)),
        future=torch.from_numpy(np.ascontiguousarray(future)),
        static=torch.zeros((len(dataset.series), 0), dtype=torch.float64),
        observed_before=observed_before,
    )


def padded_for_training(dataset: Dataset, *, input_size: int, horizon: int, val_size: int, test_size: int) -> Dataset:
    """Every series too short for the input window and the three blocks, left-padded with missing
    points so that it still gives what it can: windows into training with at least one observed
    input, and its tail to the validation and test blocks when it reaches them. Long series are
    left as they are."""
    minimum = input_size + horizon + val_size + test_size
    blocks = horizon + val_size + test_size
    series = [
        _padded(s, input_size - 1 + max(0, blocks + 1 - len(s)), dataset.freq) if len(s) < minimum else s
        for s in dataset.series
    ]
    return replace(dataset, series=series)


def _padded(series: Series, padding: int, freq: str) -> Series:
    before = pd.date_range(end=series.timestamps[0], periods=padding + 1, freq=freq)[:-1]

    def missing(block: np.ndarray | None) -> np.ndarray | None:
        if block is None:
            return None
        return np.concatenate([np.full((padding, *block.shape[1:]), np.nan), block])

    return replace(
        series,
        timestamps=pd.DatetimeIndex(before.append(series.timestamps)),
        values=np.concatenate([np.full(padding, np.nan), series.values]),
        past=missing(series.past),
        future=missing(series.future),
        padding=series.padding + padding,
    )


def split_blocks(store: SeriesStore, *, input_size: int, horizon: int, val_size: int, test_size: int) -> Blocks:
    """The last `test_size` points of each series are test, the `val_size` before validation."""
    if val_size < horizon or test_size < horizon:
        raise InvalidInput(
            f"--val-size ({val_size}) and --test-size ({test_size}) must each be at least the horizon ({horizon}) "
            "so that every block holds one whole forecast"
        )
    minimum = input_size + horizon + val_size + test_size
    for series_id, length in zip(store.series_ids, store.lengths, strict=True):
        if length < minimum:
            raise SeriesTooShort(
                f"has {int(length)} points but needs at least {minimum} "
                f"(input size {input_size} + horizon {horizon} + validation {val_size} + test {test_size})",
                series_id=series_id,
            )
    validation_end = store.lengths - test_size
    return Blocks(train_end=validation_end - val_size, validation_end=validation_end)


def origins_between(
    store: SeriesStore, start: np.ndarray, end: np.ndarray, *, input_size: int, horizon: int
) -> np.ndarray:
    """Absolute origins t whose targets [t, t + H) lie in [start, end) of their series and whose
    input [t - L, t) lies inside the series, with at least one observed point in the input and
    one in the targets (gaps and padding are missing points). Stride 1. Returns (W,) int64."""
    first = np.maximum(start, input_size)
    last = end - horizon  # inclusive
    counts = np.clip(last - first + 1, 0, None)
    total = int(counts.sum())
    series_of = np.repeat(np.arange(len(counts)), counts)
    step = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    origins = store.offsets[:-1][series_of] + first[series_of] + step
    if store.observed_before is None:
        return origins
    signal = (store.observed_between(origins - input_size, origins) > 0) & (
        store.observed_between(origins, origins + horizon) > 0
    )
    return origins[signal]


def window_counts(store: SeriesStore, origins: np.ndarray, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each window's points before its first observed one (a short series' padding, or a gap the
    window starts in: what the predictor counts, `forecast.model.missing.before_first_observed`)
    and its observed points, (W,) each."""
    if store.observed_before is None:
        return np.zeros(len(origins), dtype=np.int64), np.full(len(origins), input_size, dtype=np.int64)
    starts = origins - input_size
    # the first observed point at or after each window's start: where the count of observed points first moves
    first = np.searchsorted(store.observed_before, store.observed_before[starts], side="right") - 1
    padding = np.clip(first - starts, 0, input_size)
    return padding, store.observed_between(starts, origins)


def block_origins(store: SeriesStore, blocks: Blocks, block: str, *, input_size: int, horizon: int) -> np.ndarray:
    zeros = np.zeros_like(blocks.train_end)
    bounds = {
        "train": (zeros, blocks.train_end),
        "validation": (blocks.train_end, blocks.validation_end),
        "test": (blocks.validation_end, store.lengths),
    }[block]
    return origins_between(store, *bounds, input_size=input_size, horizon=horizon)


def training_parts(values: np.ndarray, store: SeriesStore, blocks: Blocks) -> list[np.ndarray]:
    """Each series' training part, [0, train_end), out of `values` laid out like the store's:
    the only data the scaler and the MASE denominators may see."""
    return [values[start : start + int(end)] for start, end in zip(store.offsets[:-1], blocks.train_end, strict=True)]


def series_of_origins(store: SeriesStore, origins: np.ndarray) -> np.ndarray:
    """Index of the series each absolute origin belongs to. (W,) int64."""
    return np.searchsorted(store.offsets, origins, side="right") - 1


@dataclass(slots=True)
class WindowBatch:
    history: torch.Tensor  # (B, L) raw values of the input window
    features: torch.Tensor  # (B, L + K, F) calendar features of the input window and K known steps after it
    target: torch.Tensor  # (B, H) raw values to forecast
    past: torch.Tensor  # (B, L, P) raw past covariates of the input window
    future: torch.Tensor  # (B, L + K, Q) raw future-known covariates, over the same steps as the calendar
    static: torch.Tensor  # (B, W) the static input of each window's series


def gather(
    store: SeriesStore, origins: np.ndarray | torch.Tensor, *, input_size: int, horizon: int, known_steps: int = 0
) -> WindowBatch:
    """The windows at `origins`; `known_steps` of the horizon (0 or H) come with their
    future-known inputs, for a network that reads them.

    A window that reaches back before its series' first point (a version that reads further back
    than the job's padding, scored on the job's origins) reads those points as missing, as a
    posted series shorter than the window is padded: never the series before it in the store."""
    origin = torch.as_tensor(origins, dtype=torch.int64)[:, None]  # (B, 1)
    window = origin + torch.arange(-input_size, 0)  # (B, L)
    ahead = origin + torch.arange(horizon)  # (B, H)
    known = origin + torch.arange(-input_size, known_steps)  # (B, L + K)
    series_index = series_of_origins(store, np.asarray(origins))
    series = torch.as_tensor(series_index, dtype=torch.int64)  # (B,)
    first = torch.as_tensor(store.offsets[:-1][series_index], dtype=torch.int64)[:, None]  # (B, 1)
    before = window < first  # (B, L)
    reaches_before = bool(before.any())
    if reaches_before:
        window, known = torch.maximum(window, first), torch.maximum(known, first)
    batch = WindowBatch(
        history=store.values[window],
        features=store.features[known],  # before the start: the first point's calendar, never fitted
        target=store.values[ahead],
        past=store.past[window],
        future=store.future[known],
        static=store.static[series.to(store.static.device)],
    )
    if reaches_before:
        known_before = torch.cat([before, before.new_zeros((len(before), known_steps))], dim=1)  # (B, L + K)
        batch.history = _missing_where(batch.history, before)
        batch.past = _missing_where(batch.past, before)
        batch.future = _missing_where(batch.future, known_before)
    return batch


def _missing_where(values: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """NaN at the (B, T) positions `before`, over any trailing columns."""
    mask = before.to(values.device).reshape(*before.shape, *([1] * (values.dim() - 2)))
    return values.masked_fill(mask, float("nan"))
