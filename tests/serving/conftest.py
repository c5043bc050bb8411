"""Shared by the serving tests: a small hourly version (posted series for it: tests/support/requests.py)."""

from __future__ import annotations

import pytest

from forecast.registry.manifest import Manifest
from tests.factories import make_manifest
from tests.support.requests import HORIZON, INPUT_SIZE


@pytest.fixture
def manifest() -> Manifest:
    return make_manifest(freq="h", features=["hour_of_day", "day_of_week"], input_size=INPUT_SIZE, horizon=HORIZON)
