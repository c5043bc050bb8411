"""Preparing a training job (`prepare`): the data loaded and checked, the input size picked when
the user left it open, the blocks cut, the evaluation set built once (the new version and
production are both scored on it), and the weights to start from found; nothing is fitted yet."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from forecast.errors import InvalidInput, SeriesTooShort, excerpt
from forecast.model.config import NetworkConfig
from forecast.model.devices import resolve_device
from forecast.registry.manifest import TrainingConfig
from forecast.registry.store import PRODUCTION, Registry, check_name
from forecast.registry.weights import load_predictor
from forecast.series.dataset import Dataset, load_dataset
from forecast.series.features import FEATURE_NAMES, default_features
from forecast.series.frequency import cadence
from forecast.series.tables import Columns
from forecast.series.windows import (
    Blocks,
    SeriesStore,
    block_origins,
    build_store,
    padded_for_training,
    series_of_origins,
    split_blocks,
)
from forecast.training.choices import default_input_size, default_scaling, resolve_network
from forecast.training.covariates import fit_covariates, static_rows
from forecast.training.evaluate import evaluation_set
from forecast.training.records import PreparedJob

logger = logging.getLogger(__name__)


def _check_features(features: list[str]) -> None:
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if unknown:
        raise InvalidInput(f"unknown calendar features {unknown}; choose from {list(FEATURE_NAMES)}")


def prepare(
    data: str | Path, name: str, config: TrainingConfig, registry: Registry, *, warm_start: bool
) -> PreparedJob:
    """Load and validate the data, cut the blocks, build the evaluation set, and find the
    weights to start from."""
    check_name(name)
    dataset = _load(data, config)
    features = config.features if config.features is not None else default_features(dataset.freq)
    _check_features(features)
    if config.input_size_picked:
        config = _with_input_size(config, dataset)
    sizes = {
        "input_size": config.network.input_size,
        "horizon": config.network.horizon,
        "val_size": config.val_block_size,
        "test_size": config.test_block_size,
    }
    dataset = padded_for_training(dataset, **sizes)
    store = build_store(dataset, features)
    blocks = split_blocks(store, **sizes)
    series_per_block = _series_per_block(store, blocks, config.network, dataset)
    covariates = fit_covariates(dataset, store, blocks)  # on the training parts only
    store.static = static_rows(dataset, covariates)
    cycle = cadence(dataset.freq)
    evaluation = evaluation_set(
        store, blocks, season_length=cycle.season_length, mase_period=cycle.mase_period, input_size=sizes["input_size"]
    )
    network = resolve_network(
        config.network,
        evaluation,
        dataset.freq,
        has_future_covariates=bool(covariates.future),
        has_gaps=store.observed_before is not None,
    )
    scaling = config.scaling or default_scaling(len(dataset.series))
    config = config.model_copy(update={"network": network, "scaling": scaling})
    job = PreparedJob(
        name, str(data), config, dataset, features, store, blocks, evaluation, resolve_device(config.device), covariates
    )
    job.series_per_block = series_per_block
    if warm_start:
        _start_from_production(job, registry)
    return job


def _load(data: str | Path, config: TrainingConfig) -> Dataset:
    """The data file read with the config's columns, and what was left out of it said."""
    columns = Columns(
        series_id=config.id_column,
        timestamp=config.timestamp_column,
        value=config.value_column,
        timestamp_unit=config.timestamp_unit,
    )
    dataset = load_dataset(
        data,
        columns=columns,
        target=config.target,
        freq=config.freq,
        covariates=config.covariate_columns,
        needed_points=config.val_block_size + config.test_block_size,  # what _series_per_block asks, at least
    )
    if dataset.unused_columns:
        logger.warning(
            "columns not used: %s (name covariates with --past-covariates, --future-covariates or --static-covariates)",
            ", ".join(dataset.unused_columns[:20]) + (", ..." if len(dataset.unused_columns) > 20 else ""),
        )
    if dataset.windowless:
        logger.warning(
            "%d series of one point left out (no window to train, validate or test on), e.g. %s",
            dataset.windowless,
            ", ".join(excerpt(series_id) for series_id in dataset.windowless_ids),
        )
    if dataset.left_out:
        first = dataset.left_out[0]
        left_out, kept = len(dataset.left_out), len(dataset.series)
        logger.warning("%d series left out (too little signal), the first %s; %d series train", left_out, first, kept)
    return dataset


def _start_from_production(job: PreparedJob, registry: Registry) -> None:
    """--warm-start: the production version's weights, which must fit the job's network."""
    job.parent_version = registry.resolve(job.name, alias=PRODUCTION)
    parent = load_predictor(registry, job.name, job.parent_version, torch.device("cpu"))
    if parent.manifest.network != job.config.network or parent.manifest.layout != job.layout:
        raise InvalidInput(
            f"--warm-start needs the production version's network ({parent.manifest.network.model_dump()}) "
            f"and covariates ({parent.manifest.covariates.kinds()}); use --retrain to reuse its configuration"
        )
    job.initial_state = parent.predictor.network.state_dict()


def _with_input_size(config: TrainingConfig, dataset: Dataset) -> TrainingConfig:
    """The config with the input size the job picks for this data (`default_input_size`), logged."""
    history = dataset.median_history
    size = default_input_size(
        dataset.freq,
        config.network.horizon,
        history,
        val_size=config.val_block_size,
        test_size=config.test_block_size,
    )
    fits = config.input_size_fits  # the segment length and an anchor period the user gave
    size = fits * -(-size // fits) if size % fits else max(size, fits)
    logger.info(
        "input size %d (from the frequency %s and the median history of %d points)", size, dataset.freq, history
    )
    try:
        network = NetworkConfig.model_validate({**config.network.model_dump(), "input_size": size})
    except ValidationError as exc:
        raise InvalidInput(
            f"the picked input size {size} does not fit: {exc.errors()[0]['msg']}; pass --input-size"
        ) from exc
    return config.model_copy(update={"network": network})


def _series_per_block(store: SeriesStore, blocks: Blocks, network: NetworkConfig, dataset: Dataset) -> dict[str, int]:
    """How many series give at least one window to each block, logged in one line. A dataset is
    refused only when no series can be trained on, validated or tested."""
    counts: dict[str, int] = {}
    for block in ("train", "validation", "test"):
        origins = block_origins(store, blocks, block, input_size=network.input_size, horizon=network.horizon)
        counts[block] = len(np.unique(series_of_origins(store, origins)))
    empty = [block for block, count in counts.items() if count == 0]
    if empty:
        longest = max(len(s) - s.padding for s in dataset.series)
        validation = int(blocks.validation_end[0] - blocks.train_end[0])
        test = int(store.lengths[0] - blocks.validation_end[0])
        raise SeriesTooShort(
            f"no series gives a window to the {' and '.join(empty)} block(s): the longest has {longest} points, "
            f"and a series needs more than the validation ({validation}) and test ({test}) blocks together, with "
            "an observed point before each; lower --val-size and --test-size (each at least the horizon)"
        )
    padded = sum(1 for s in dataset.series if s.padding)
    if padded or min(counts.values()) < len(dataset.series):
        fed = ", ".join(f"{'training' if block == 'train' else block} {count}" for block, count in counts.items())
        total = len(dataset.series)
        message = "series feeding each block: %s of %d (%d shorter than the input window and the blocks: padded)"
        logger.warning(message, fed, total, padded)
    return counts
