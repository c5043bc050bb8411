"""Posted series for a small hourly version (input 6, horizon 4), cut into windows the way the
serving path cuts them."""

from __future__ import annotations

import pandas as pd

from forecast.registry.manifest import Manifest
from forecast.serving.requests import PreparedSeries, prepare_series

INPUT_SIZE, HORIZON = 6, 4


def hourly_values(count: int) -> list[float]:
    return [float(10 + (3 * step) % 7) for step in range(count)]


def iso(stamps: pd.DatetimeIndex) -> list[str]:
    return [stamp.isoformat() for stamp in stamps]


def prepare(manifest: Manifest, values: list[float], **given: object) -> PreparedSeries:
    """Series 'a' prepared against `manifest`; `given` overrides the timestamps, start, freq or
    horizon."""
    arguments: dict[str, object] = {"timestamps": None, "start": None, "freq": None, "horizon": manifest.horizon}
    arguments.update(given)
    return prepare_series(manifest, "a", values, **arguments)  # type: ignore[arg-type]
