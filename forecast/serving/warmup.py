"""The warm-up of a loaded version: one request through the path every request takes.

A forward pass of a zeros tensor proves only the network's shape. A version whose manifest names
a frequency, feature or calibration the request path cannot use would pass that and then fail
every request, so the warm-up posts a constant series by start and frequency, asks for every
calibrated interval level, and checks that the answer is finite, before the version is served.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecast.errors import RegistryCorrupt
from forecast.serving.pipeline import ForecastPipeline
from forecast.serving.requests import check_request

# Any instant works; it is rolled onto the model's frequency (a weekly model's Sunday, say).
_ORIGIN = "2024-01-01"


@dataclass(slots=True)
class _WarmUpSeries:
    """A posted series, as `PostedSeries` reads it."""

    id: str
    values: list[float]
    start: str
    timestamps: list[str] | None = None
    freq: str | None = None
    past_covariates: Mapping[str, Sequence[float]] | None = None
    future_covariates: Mapping[str, Sequence[float]] | None = None
    static_covariates: Mapping[str, str | float] | None = None


def warm_up(pipeline: ForecastPipeline) -> None:
    """Forecast one constant series through the version's own batch function, on the caller's
    thread (the inference thread). Raises whatever a request would meet."""
    manifest = pipeline.manifest
    start = pd.date_range(start=_ORIGIN, periods=1, freq=manifest.freq)[0]
    size, covariates = manifest.input_size, manifest.covariates
    series = _WarmUpSeries(
        id="warm-up",
        values=[0.0] * size,
        start=start.isoformat(),
        # Each covariate at its training mean, and the first category (or the bucket of unseen ones).
        past_covariates={c.name: [c.loc] * size for c in covariates.past},
        future_covariates={c.name: [c.loc] * (size + manifest.horizon) for c in covariates.future},
        static_covariates={c.name: c.categories[0] if c.categories else c.loc for c in covariates.static},
    )
    levels = list(manifest.intervals.levels)
    horizon = check_request(manifest, None, levels)
    prepared = pipeline.prepare([series], horizon)
    outputs = pipeline.batcher.run_batch([p.window for p in prepared])
    if len(outputs) != len(prepared):
        raise RegistryCorrupt(f"the network answered {len(outputs)} forecasts for {len(prepared)} windows")
    if not all(np.isfinite(output.mean).all() and np.isfinite(output.spread).all() for output in outputs):
        raise RegistryCorrupt(
            "the forecast of a constant series is not finite (NaN or infinite weights or scaling parameters)"
        )
    pipeline.finish(prepared, outputs, horizon, levels)  # the intervals, checked finite there too
