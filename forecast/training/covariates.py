"""The covariates' scaling and categories, fitted on the training part only, as the manifest
stores them (`forecast.model.covariates.Covariates`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from forecast.model.covariates import Covariates, StaticKind, fit_scaled, fit_static
from forecast.series.covariates import CovariateColumns
from forecast.series.dataset import Dataset
from forecast.series.windows import Blocks, SeriesStore, training_parts


def static_kind(name: str, columns: CovariateColumns, values: list[str | float]) -> StaticKind:
    """Numeric when every series' value is a finite number, unless the user named it categorical."""
    numeric = all(isinstance(value, float) and np.isfinite(value) for value in values)
    return "numeric" if numeric and name not in columns.forced_categorical else "categorical"


def fit_covariates(dataset: Dataset, store: SeriesStore, blocks: Blocks) -> Covariates:
    """Each past and future-known covariate standardised on the training parts of every series;
    each static one scaled (numeric) or given its categories (categorical) over the series."""
    columns = dataset.covariates
    if columns.empty:
        return Covariates()

    def training_values(block: torch.Tensor, index: int) -> np.ndarray:
        column = block[:, index].numpy().astype(np.float64)
        return np.concatenate(training_parts(column, store, blocks))

    static = []
    for name in columns.static_names:
        values = [series.static[name] for series in dataset.series]
        static.append(fit_static(name, static_kind(name, columns, values), values))
    return Covariates(
        past=[fit_scaled(name, training_values(store.past, index)) for index, name in enumerate(columns.past)],
        future=[fit_scaled(name, training_values(store.future, index)) for index, name in enumerate(columns.future)],
        static=static,
    )


def static_rows(dataset: Dataset, covariates: Covariates) -> torch.Tensor:
    """(S, W) float64: each series' static input (codes, then raw numbers), in the store's order."""
    rows = [covariates.static_row(series.static) for series in dataset.series]
    width = len(covariates.static)
    return (
        torch.from_numpy(np.stack(rows))
        if rows and width
        else torch.zeros((len(dataset.series), width), dtype=torch.float64)
    )


def store_for(covariates: Covariates, dataset: Dataset, store: SeriesStore) -> SeriesStore | None:
    """The store laid out for a version that reads `covariates` (another version's, such as
    production's when --promote compares them): each of its covariates taken by name from what
    this data holds, whatever kind this job named it; None when the data lacks one of them."""
    columns = {name: store.past[:, index] for index, name in enumerate(dataset.covariates.past)}
    columns.update({name: store.future[:, index] for index, name in enumerate(dataset.covariates.future)})
    statics = set(dataset.covariates.static_names)
    wanted = [c.name for c in covariates.past] + [c.name for c in covariates.future]
    if any(name not in columns for name in wanted) or any(c.name not in statics for c in covariates.static):
        return None
    empty = store.values.new_zeros((len(store.values), 0))

    def stacked(names: list[str]) -> torch.Tensor:
        return torch.stack([columns[name] for name in names], dim=1) if names else empty

    return replace(
        store,
        past=stacked([c.name for c in covariates.past]),
        future=stacked([c.name for c in covariates.future]),
        static=static_rows(dataset, covariates),
    )
