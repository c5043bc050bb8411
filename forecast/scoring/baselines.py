"""Baselines every model is measured against: naive (repeat the last value) and seasonal naive
(repeat the last full season). Both read the stored history directly, not the input window,
with its gaps filled as a window ending at each origin fills them (`History`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from forecast.model.missing import fill_gaps


@dataclass(frozen=True, slots=True)
class History:
    """A store's values as the baselines read them before an origin. A gap that closes before
    the origin reads its straight-line fill; one still open at the origin reads the value before
    it carried forward, as the model's window is filled: no baseline sees past its origin."""

    linear: np.ndarray  # (N,) gaps filled along each series
    carried: np.ndarray  # (N,) gaps filled with the value before them
    next_observed: np.ndarray  # (N,) position of the next observed point at or after each one

    @classmethod
    def complete(cls, values: np.ndarray) -> History:
        return cls(values, values, np.arange(len(values)))

    def before(self, positions: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """Values at `positions` as seen from `origins` (broadcast alike)."""
        closed = self.next_observed[positions] < origins
        return np.where(closed, self.linear[positions], self.carried[positions])


def naive(history: History, origins: np.ndarray, horizon: int) -> np.ndarray:
    """(W, H): the value just before each origin, repeated."""
    return np.repeat(history.before(origins - 1, origins)[:, None], horizon, axis=1)


def seasonal_naive(
    history: History, origins: np.ndarray, horizon: int, season: int, series_starts: np.ndarray
) -> np.ndarray:
    """(W, H): step h repeats the value one season before, values[t - m + (h mod m)].
    Windows with less than one season of history fall back to the naive forecast."""
    steps = np.arange(horizon)
    source = origins[:, None] - season + (steps % season)[None, :]  # (W, H)
    enough_history = (origins - season) >= series_starts
    source = np.where(enough_history[:, None], source, origins[:, None] - 1)
    return history.before(source, origins[:, None])


def filled_history(values: np.ndarray, offsets: np.ndarray) -> tuple[History, np.ndarray]:
    """Each series' gaps filled by the model's rules (linearly, and carried forward), and where
    each series' first observation is."""
    linear, carried = values.copy(), values.copy()
    next_observed = np.arange(len(values))
    first_observed = offsets[:-1].copy()
    for index, (start, end) in enumerate(itertools.pairwise(offsets)):
        part = values[start:end]
        missing = ~np.isfinite(part)
        if not missing.any():
            continue
        first_observed[index] = start + int(np.argmax(~missing))
        linear[start:end] = fill_gaps(torch.from_numpy(part[None, :])).values[0].numpy()
        carried[start:end] = fill_gaps(torch.from_numpy(part[None, :]), "previous").values[0].numpy()
        ahead = np.where(missing, end, np.arange(start, end))  # end: nothing observed after
        next_observed[start:end] = np.minimum.accumulate(ahead[::-1])[::-1]
    return History(linear, carried, next_observed), first_observed
