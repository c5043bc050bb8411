"""Small synthetic series written as real files: a seasonal frame, and the same as users bring it
(missing values and timestamps, short series)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# A good small configuration: trains in a few seconds on two cores and beats seasonal naive.
SERIES_IDS: tuple[str, ...] = ("a", "b", "c")
POINTS_PER_SERIES = 400


def seasonal_frame(
    series_ids: tuple[str, ...] = SERIES_IDS, n_points: int = POINTS_PER_SERIES, seed: int = 0
) -> pd.DataFrame:
    """Hourly long-format series: a daily cycle, a slow trend and AR(1) noise.

    The AR noise makes the last value informative and the trend shifts each day against the
    day before, so seasonal naive is good but beatable.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for index, series_id in enumerate(series_ids):
        steps = np.arange(n_points)
        noise = np.zeros(n_points)
        for t in range(1, n_points):
            noise[t] = 0.9 * noise[t - 1] + rng.normal(0.0, 0.3)
        values = 10.0 + 2 * index + 3.0 * np.sin(2 * np.pi * steps / 24 + index) + 0.03 * steps + noise
        frames.append(
            pd.DataFrame(
                {
                    "series_id": series_id,
                    "timestamp": pd.date_range("2024-01-01", periods=n_points, freq="h"),
                    "value": values,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def messy_frame(seed: int = 0) -> pd.DataFrame:
    """seasonal_frame as users bring it: series 'a' with missing values (empty cells) in every
    block, 'b' with missing timestamps, 'c' a new series of 40 points, 'd' a new one of 5."""
    rng = np.random.default_rng(seed)
    frame = seasonal_frame(("a", "b", "c", "d"), seed=seed)
    rows = {sid: frame.index[frame["series_id"] == sid] for sid in ("a", "b", "c", "d")}
    frame.loc[rng.choice(rows["a"][1:-1], 25, replace=False), "value"] = np.nan
    frame = frame.drop(rng.choice(rows["b"][1:-1], 20, replace=False))
    return frame.drop([*rows["c"][:-40], *rows["d"][:-5]]).reset_index(drop=True)
