"""Windowing: every window stays inside one series and one block, stride 1, gathered on demand,
and nothing of size data x input_size is ever built."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.errors import InvalidInput, SeriesTooShort
from forecast.model.missing import before_first_observed
from forecast.series.dataset import Dataset, Series
from forecast.series.windows import (
    SeriesStore,
    block_origins,
    build_store,
    gather,
    origins_between,
    series_of_origins,
    split_blocks,
    window_counts,
)

FAST = settings(max_examples=60, deadline=None, database=None)  # no .hypothesis folder in the tree


def make_dataset(lengths: list[int], *, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    series = [
        Series(
            series_id=f"s{index}",
            timestamps=pd.date_range("2024-01-01", periods=length, freq="h"),
            values=np.round(rng.normal(size=length) * 100.0 + 1000.0 * index, 2),
        )
        for index, length in enumerate(lengths)
    ]
    return Dataset(series=series, freq="h", source="test")


@st.composite
def split_cases(draw: st.DrawFn) -> tuple[SeriesStore, int, int, int, int]:
    """A store whose series are all long enough for the split, with sizes drawn freely."""
    input_size = draw(st.integers(1, 8))
    horizon = draw(st.integers(1, 6))
    val_size = horizon + draw(st.integers(0, 6))
    test_size = horizon + draw(st.integers(0, 6))
    minimum = input_size + horizon + val_size + test_size
    slack = draw(st.lists(st.integers(0, 12), min_size=1, max_size=5))
    store = build_store(make_dataset([minimum + extra for extra in slack]), [])
    return store, input_size, horizon, val_size, test_size


def brute_force_origins(store: SeriesStore, start: np.ndarray, end: np.ndarray, input_size: int, horizon: int) -> set:
    """Every absolute t, checked one by one, whose input and target fit the series and whose
    target lies in [start, end) of it."""
    found = set()
    for index, (offset, length) in enumerate(zip(store.offsets[:-1], store.lengths, strict=True)):
        for position in range(int(length) + 1):
            fits = position - input_size >= 0 and position + horizon <= length
            in_range = position >= start[index] and position + horizon <= end[index]
            if fits and in_range:
                found.add(int(offset) + position)
    return found


@given(case=split_cases())
@FAST
def test_block_origins_are_exactly_the_windows_inside_each_block(case: tuple) -> None:
    store, input_size, horizon, val_size, test_size = case
    blocks = split_blocks(store, input_size=input_size, horizon=horizon, val_size=val_size, test_size=test_size)
    lengths = store.lengths
    bounds = {
        "train": (np.zeros_like(lengths), blocks.train_end),
        "validation": (blocks.train_end, blocks.validation_end),
        "test": (blocks.validation_end, lengths),
    }
    assert np.array_equal(blocks.validation_end, lengths - test_size)
    assert np.array_equal(blocks.train_end, lengths - test_size - val_size)
    for block, (start, end) in bounds.items():
        origins = block_origins(store, blocks, block, input_size=input_size, horizon=horizon)
        assert origins.dtype == np.int64
        assert np.all(np.diff(origins) > 0), "sorted, no duplicates"
        assert set(origins.tolist()) == brute_force_origins(store, start, end, input_size, horizon)

        series = series_of_origins(store, origins)
        position = origins - store.offsets[series]  # relative to the series' start
        assert np.all(position - input_size >= 0), "input starts inside the series"
        assert np.all(position + horizon <= lengths[series]), "target ends inside the series"
        assert np.all(position >= start[series]), f"{block} target starts inside the block"
        assert np.all(position + horizon <= end[series]), f"{block} target ends inside the block"


@given(case=split_cases())
@FAST
def test_stride_one_gives_block_length_minus_horizon_plus_one_windows(case: tuple) -> None:
    store, input_size, horizon, val_size, test_size = case
    blocks = split_blocks(store, input_size=input_size, horizon=horizon, val_size=val_size, test_size=test_size)
    n_series = len(store.series_ids)

    def per_series(block: str) -> np.ndarray:
        origins = block_origins(store, blocks, block, input_size=input_size, horizon=horizon)
        return np.bincount(series_of_origins(store, origins), minlength=n_series)

    # Validation and test blocks sit after at least input_size points, so the input always fits.
    assert np.all(per_series("validation") == val_size - horizon + 1)
    assert np.all(per_series("test") == test_size - horizon + 1)
    # The training part's first input_size points only feed inputs.
    assert np.all(per_series("train") == blocks.train_end - input_size - horizon + 1)


@given(
    lengths=st.lists(st.integers(0, 30), min_size=1, max_size=5),
    input_size=st.integers(1, 10),
    horizon=st.integers(1, 10),
    data=st.data(),
)
@FAST
def test_origins_between_never_cross_a_series_boundary(
    lengths: list[int], input_size: int, horizon: int, data: st.DataObject
) -> None:
    """Any [start, end) per series, even ones the input cannot fit or that are empty."""
    store = build_store(make_dataset([max(1, length) for length in lengths]), [])
    start = np.array([data.draw(st.integers(0, int(n))) for n in store.lengths], dtype=np.int64)
    end = np.array([data.draw(st.integers(int(s), int(n))) for s, n in zip(start, store.lengths, strict=True)])
    origins = origins_between(store, start, end, input_size=input_size, horizon=horizon)
    assert set(origins.tolist()) == brute_force_origins(store, start, end, input_size, horizon)


@given(case=split_cases(), data=st.data())
@FAST
def test_gather_returns_exactly_the_input_and_target_slices(case: tuple, data: st.DataObject) -> None:
    store, input_size, horizon, val_size, test_size = case
    blocks = split_blocks(store, input_size=input_size, horizon=horizon, val_size=val_size, test_size=test_size)
    block = data.draw(st.sampled_from(["train", "validation", "test"]))
    origins = block_origins(store, blocks, block, input_size=input_size, horizon=horizon)
    picked = np.array(data.draw(st.lists(st.sampled_from(origins.tolist()), min_size=1, max_size=8)), dtype=np.int64)
    batch = gather(store, picked, input_size=input_size, horizon=horizon)

    values = store.values.numpy()
    assert batch.history.shape == (len(picked), input_size)
    assert batch.target.shape == (len(picked), horizon)
    assert batch.features.shape == (len(picked), input_size, 0)
    for row, t in enumerate(picked):
        assert np.array_equal(batch.history[row].numpy(), values[t - input_size : t])
        assert np.array_equal(batch.target[row].numpy(), values[t : t + horizon])


def test_gather_carries_the_calendar_features_of_the_input_points() -> None:
    dataset = make_dataset([40, 50])
    store = build_store(dataset, ["hour_of_day"])
    origins = np.array([10, 45, 70])  # one in the first series, two in the second
    batch = gather(store, torch.as_tensor(origins), input_size=5, horizon=3)
    hours = np.concatenate([s.timestamps.hour.to_numpy() for s in dataset.series])
    for row, t in enumerate(origins):
        angle = 2 * np.pi * hours[t - 5 : t] / 24.0
        assert np.allclose(batch.features[row, :, 0].numpy(), np.sin(angle), atol=1e-6)
        assert np.allclose(batch.features[row, :, 1].numpy(), np.cos(angle), atol=1e-6)


def test_a_window_reaching_before_its_series_reads_missing_points_never_the_series_before() -> None:
    """A version that reads further back than a series holds (a stand-in anchor reading several
    windows, scored at the job's origins) sees that stretch as missing, as a short posted series
    is padded."""
    dataset = make_dataset([40, 50])
    store = build_store(dataset, ["hour_of_day"])
    values = store.values.numpy()
    batch = gather(store, np.array([45, 70]), input_size=10, horizon=3)  # 5 and 30 points into the second
    np.testing.assert_array_equal(batch.history[0, :5].numpy(), np.full(5, np.nan))
    np.testing.assert_array_equal(batch.history[0, 5:].numpy(), values[40:45])
    np.testing.assert_array_equal(batch.history[1].numpy(), values[60:70])
    np.testing.assert_array_equal(batch.target[0].numpy(), values[45:48])
    assert bool(torch.isfinite(batch.features).all()), "the calendar stays finite: what padding reads is never fitted"


def test_a_series_too_short_for_the_split_is_named() -> None:
    store = build_store(make_dataset([60, 29, 60]), [])
    with pytest.raises(SeriesTooShort, match="'s1'") as caught:
        split_blocks(store, input_size=10, horizon=5, val_size=8, test_size=7)
    assert caught.value.series_id == "s1"
    assert "29" in str(caught.value) and "30" in str(caught.value)  # has 29, needs 10 + 5 + 8 + 7
    # One point more is enough.
    split_blocks(build_store(make_dataset([30]), []), input_size=10, horizon=5, val_size=8, test_size=7)


@pytest.mark.parametrize(("val_size", "test_size"), [(4, 5), (5, 4), (0, 10)])
def test_blocks_smaller_than_the_horizon_are_refused(val_size: int, test_size: int) -> None:
    store = build_store(make_dataset([100]), [])
    with pytest.raises(InvalidInput, match="horizon") as caught:
        split_blocks(store, input_size=10, horizon=5, val_size=val_size, test_size=test_size)
    assert not isinstance(caught.value, SeriesTooShort)


def test_windows_cost_memory_per_origin_not_per_origin_times_input_size() -> None:
    """200 series x 2000 points, L=168: the windows would take W*L*4 bytes (~250 MB); the store
    and the origins take 4*N and 8*W bytes, and making the origins allocates O(W) only."""
    n_series, length, input_size, horizon = 200, 2000, 168, 24
    rng = np.random.default_rng(7)
    stamps = pd.date_range("2024-01-01", periods=length, freq="h")
    dataset = Dataset(
        series=[Series(f"s{i}", stamps, rng.normal(size=length)) for i in range(n_series)], freq="h", source="mem"
    )
    n_points = n_series * length
    store = build_store(dataset, [])
    assert store.values.dtype == torch.float32
    assert store.values.numel() * store.values.element_size() == 4 * n_points
    assert store.features.numel() == 0
    blocks = split_blocks(store, input_size=input_size, horizon=horizon, val_size=horizon, test_size=horizon)

    tracemalloc.start()
    try:
        origins = block_origins(store, blocks, "train", input_size=input_size, horizon=horizon)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n_windows = n_series * (length - 2 * horizon - input_size - horizon + 1)
    assert len(origins) == n_windows
    assert origins.nbytes == 8 * n_windows
    windows_bytes = 4 * n_windows * input_size
    assert peak_bytes < 6 * origins.nbytes  # a few int64 temporaries of length W
    assert peak_bytes < windows_bytes / 20

    # A training batch gathers only its own windows.
    batch = gather(store, origins[:128], input_size=input_size, horizon=horizon)
    assert batch.history.shape == (128, input_size)


def test_window_counts_are_the_predictors_padding_and_observed_points() -> None:
    """A window that starts inside a gap counts the gap's points before its first observed one as
    padding, as the predictor does (forecast.model.missing.before_first_observed)."""
    values = np.arange(100, dtype=np.float64)
    values[40:60] = np.nan
    stamps = pd.date_range("2024-01-01", periods=100, freq="D")
    store = build_store(Dataset([Series("gappy", stamps, values)], "D", "test"), [])
    origins = np.array([70, 90, 30])
    padding, observed = window_counts(store, origins, 28)
    history = torch.from_numpy(np.stack([values[o - 28 : o] for o in origins]))
    expected = before_first_observed(torch.isfinite(history)).sum(dim=1).numpy()
    np.testing.assert_array_equal(padding, expected)
    np.testing.assert_array_equal(observed, torch.isfinite(history).sum(dim=1).numpy())
    assert list(padding) == [18, 0, 0]
