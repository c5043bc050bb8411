"""A registry version served in this process, without a server: what the command line's
backtest and evaluation run through. The version is loaded, checked and warmed up as the API
loads it (`LoadedVersions`), and its windows go through its own dynamic batcher, on the GPU when
there is one: the same code as a request's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np

from forecast.errors import RegistryCorrupt
from forecast.model.devices import resolve_device
from forecast.registry.manifest import Manifest
from forecast.registry.store import Registry
from forecast.series.covariates import CovariateColumns
from forecast.series.dataset import Dataset, Series, load_dataset
from forecast.series.tables import Columns
from forecast.serving.failures import LoadFailure
from forecast.serving.pipeline import ForecastPipeline, network_forward
from forecast.serving.versions import LoadedVersions
from forecast.settings import Settings


@dataclass(frozen=True, slots=True)
class DataSeries:
    """One series of a data file in the shape a request posts it (`PostedSeries`): its values on
    the frequency's grid from its first instant, NaN where one is missing."""

    id: str
    values: Sequence[float | None]
    start: str | None
    freq: str | None
    timestamps: list[str] | None = None
    past_covariates: Mapping[str, Sequence[float | None]] | None = None
    future_covariates: Mapping[str, Sequence[float | None]] | None = None
    static_covariates: Mapping[str, str | float] | None = None


def _columns(block: np.ndarray | None, names: list[str]) -> dict[str, Sequence[float | None]] | None:
    if block is None or not names:
        return None
    return {name: block[:, index] for index, name in enumerate(names)}  # type: ignore[misc]  # arrays are sequences


def posted_series(dataset: Dataset, manifest: Manifest) -> list[DataSeries]:
    """The dataset's series as requests post them to `manifest`'s version."""
    kinds = manifest.covariates.kinds()
    return [
        DataSeries(
            id=series.series_id,
            values=series.values,  # type: ignore[arg-type]  # a float64 array: NaN is missing
            start=series.timestamps[0].isoformat(),
            freq=manifest.freq,
            past_covariates=_columns(series.past, dataset.covariates.past),
            future_covariates=_columns(series.future, dataset.covariates.future),
            static_covariates=_static(series, kinds["static"]),
        )
        for series in dataset.series
    ]


def _static(series: Series, names: list[str]) -> dict[str, str | float] | None:
    return {name: series.static[name] for name in names if name in series.static} or None


def load_for_version(
    path: str, manifest: Manifest, static_data: str | None = None, *, leave_out_bad: bool = False
) -> Dataset:
    """A data file read with the columns the version was trained on (its id, time and value
    columns, its covariates by kind) at the version's frequency; with `leave_out_bad`, a series
    with a problem of its own is left out (`Dataset.left_out`) instead of refusing the file."""
    training = manifest.training
    columns = training.covariate_columns
    if static_data is not None:
        columns = CovariateColumns(columns.past, columns.future, columns.static, static_data)
    return load_dataset(
        path,
        columns=Columns(training.id_column, training.timestamp_column, training.value_column, training.timestamp_unit),
        target=training.target,
        freq=manifest.freq,
        covariates=columns,
        leave_out_bad=leave_out_bad,
    )


@asynccontextmanager
async def served_here(
    registry: Registry, settings: Settings, name: str, version: int
) -> AsyncIterator[ForecastPipeline]:
    """The version loaded as the API loads it, its batcher running until the block ends."""
    versions = LoadedVersions(registry, settings, resolve_device(settings.device), network_forward)
    try:
        served = await versions.ensure(name, version)
        if isinstance(served, LoadFailure):
            raise RegistryCorrupt(f"model {name!r} version {version} cannot be loaded: {served.error}")
        yield served.pipeline
    finally:
        await versions.stop()
