"""Where a posted series' points sit in the model's input window.

The posted points lie on the frequency's grid, possibly with gaps (timestamps left out of the
`timestamps` form); the window is the last `input_size` grid positions up to the last posted
point. A series shorter than the window is left-padded. Gaps and padding are NaN, which the model
layer fills and masks (`forecast.model.missing`), so no special case reaches the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Placement:
    """`positions` (T,) of the posted points on the grid (None: one after the other), `length`
    the grid's points from the first posted one to the last, `size` the window's."""

    positions: np.ndarray | None
    length: int
    size: int

    @classmethod
    def contiguous(cls, count: int, size: int) -> Placement:
        return cls(None, count, size)

    @property
    def count(self) -> int:
        """Points posted."""
        return self.length if self.positions is None else len(self.positions)

    @property
    def padding(self) -> int:
        """Points of the window before the series' first posted point."""
        return max(0, self.size - self.length)

    def on_grid(self, posted: np.ndarray) -> np.ndarray:
        """(length, ...) float64: the posted rows (T, ...) at their grid positions, NaN between."""
        placed = np.asarray(posted, dtype=np.float64)
        if self.positions is None:
            return placed
        on_grid = np.full((self.length, *placed.shape[1:]), np.nan)
        on_grid[self.positions] = placed
        return on_grid

    def window(self, posted: np.ndarray) -> np.ndarray:
        """(size, ...) float64: the last `size` grid points of the posted rows, NaN where missing."""
        placed = self.on_grid(posted)
        if self.length >= self.size:
            return placed[self.length - self.size :]
        padding = np.full((self.size - self.length, *placed.shape[1:]), np.nan)
        return np.concatenate([padding, placed])
