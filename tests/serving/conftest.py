"""Shared by the serving tests: a small hourly version and posted series for it."""

from __future__ import annotations

import pandas as pd
import pytest

from forecast.registry.manifest import Manifest
from forecast.serving.requests import PreparedSeries, prepare_series
from tests.factories import make_manifest

INPUT_SIZE, HORIZON = 6, 4


@pytest.fixture
def manifest() -> Manifest:
    return make_manifest(freq="h", features=["hour_of_day", "day_of_week"], input_size=INPUT_SIZE, horizon=HORIZON)


def _values(count: int) -> list[float]:
    return [float(10 + (3 * step) % 7) for step in range(count)]


def _iso(stamps: pd.DatetimeIndex) -> list[str]:
    return [stamp.isoformat() for stamp in stamps]


def _prepare(manifest: Manifest, values: list[float], **given: object) -> PreparedSeries:
    arguments: dict[str, object] = {"timestamps": None, "start": None, "freq": None, "horizon": manifest.horizon}
    arguments.update(given)
    return prepare_series(manifest, "a", values, **arguments)  # type: ignore[arg-type]
