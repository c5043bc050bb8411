"""Baselines every model is measured against: naive (repeat the last value) and seasonal naive
(repeat the last full season). Both read the stored history directly, not the input window."""

from __future__ import annotations

import numpy as np


def naive(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """(W, H): the value just before each origin, repeated."""
    return np.repeat(values[origins - 1][:, None], horizon, axis=1)


def seasonal_naive(
    values: np.ndarray, origins: np.ndarray, horizon: int, season: int, series_starts: np.ndarray
) -> np.ndarray:
    """(W, H): step h repeats the value one season before, values[t - m + (h mod m)].
    Windows with less than one season of history fall back to the naive forecast."""
    steps = np.arange(horizon)
    source = origins[:, None] - season + (steps % season)[None, :]  # (W, H)
    enough_history = (origins - season) >= series_starts
    source = np.where(enough_history[:, None], source, origins[:, None] - 1)
    return values[source]
