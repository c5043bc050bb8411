"""The training job end to end: data -> windows -> fit -> evaluate -> calibrate -> registry.

Nothing touches the registry until every step has succeeded, and then the version appears in
one atomic rename; the aliases move afterwards under the model's lock.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from forecast import __version__
from forecast.data import Columns, Dataset, load_dataset
from forecast.devices import resolve_device
from forecast.errors import InvalidInput, NotFound, SeriesTooShort, TrainingFailed
from forecast.evaluate import evaluate_block, mase_scales, report_samples
from forecast.features import FEATURE_NAMES, default_features
from forecast.intervals import calibrate, conformity_scores, empirical_coverage
from forecast.manifest import REPORT_FILE, WEIGHTS_FILE, DataFingerprint, Manifest, Provenance, TrainingConfig
from forecast.metrics import mase_period, season_length
from forecast.network_config import NetworkConfig
from forecast.predictor import Predictor, load_predictor, weights_bytes
from forecast.registry import PRODUCTION, Registry, check_name
from forecast.scaling import fit_scaling
from forecast.train import fit
from forecast.windows import block_origins, build_store, split_blocks

logger = logging.getLogger(__name__)

# Promotion compares scale-free errors so that many series of different sizes weigh alike;
# MAE where MASE is undefined (every training history constant; then it is so for both sides,
# which are scored on the same data).
PROMOTION_METRIC = "mase"
FALLBACK_METRIC = "mae"

Score = tuple[str, float]  # (metric, value) on this job's test block


def promotion_score(metrics: dict[str, float | None]) -> Score:
    value = metrics[PROMOTION_METRIC]
    if value is not None:
        return PROMOTION_METRIC, value
    return FALLBACK_METRIC, float(metrics[FALLBACK_METRIC] or 0.0)


def _require_finite(name: str, metrics: dict[str, dict[str, dict[str, float | None]]]) -> None:
    """A NaN or infinite error means the network produced non-finite forecasts (diverged):
    refuse to publish it rather than write a version nobody can use."""
    for block, methods in metrics.items():
        for metric, value in methods["model"].items():
            if value is not None and not math.isfinite(value):
                raise TrainingFailed(
                    f"model {name!r}: the {block} {metric} is {value} (the network's forecasts are not finite); "
                    "nothing was written. Try a lower --learning-rate or check the data's scale"
                )


@dataclass(slots=True)
class TrainOutcome:
    name: str
    version: int
    path: Path
    manifest: Manifest
    promoted: bool
    promotion_note: str


def _check_features(features: list[str]) -> None:
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if unknown:
        raise InvalidInput(f"unknown calendar features {unknown}; choose from {list(FEATURE_NAMES)}")


def _production_on_same_test(
    registry: Registry, name: str, dataset: Dataset, config: TrainingConfig, device: torch.device
) -> tuple[int, Score] | None:
    """The production version's test error on this job's test block, or None when it cannot be
    scored there (different horizon or frequency, or series too short for its input)."""
    try:
        version = registry.resolve(name, alias=PRODUCTION)
    except NotFound:
        return None
    manifest, predictor = load_predictor(registry, name, version, device)
    if manifest.horizon != config.horizon or manifest.freq != dataset.freq:
        return None
    store = build_store(dataset, manifest.features)
    try:
        blocks = split_blocks(
            store,
            input_size=manifest.input_size,
            horizon=config.horizon,
            val_size=config.val_size or config.horizon,
            test_size=config.test_size or config.horizon,
        )
    except SeriesTooShort:
        return None
    scales = mase_scales(store, blocks, mase_period(dataset.freq))
    result = evaluate_block(predictor, store, blocks, "test", season_length=season_length(dataset.freq), scales=scales)
    return version, promotion_score(result.metrics["model"])


def run_training(
    data: str | Path,
    name: str,
    config: TrainingConfig,
    registry: Registry,
    *,
    promote: bool = False,
    warm_start: bool = False,
    progress: bool = True,
) -> TrainOutcome:
    started = time.perf_counter()
    check_name(name)
    columns = Columns(series_id=config.id_column, timestamp=config.timestamp_column, value=config.value_column)
    dataset = load_dataset(data, columns=columns, target=config.target, freq=config.freq)
    features = config.features if config.features is not None else default_features(dataset.freq)
    _check_features(features)
    horizon, input_size = config.horizon, config.input_size
    val_size, test_size = config.val_size or horizon, config.test_size or horizon
    store = build_store(dataset, features)
    blocks = split_blocks(store, input_size=input_size, horizon=horizon, val_size=val_size, test_size=test_size)
    training_values = np.concatenate(
        [s.values[: int(end)] for s, end in zip(dataset.series, blocks.train_end, strict=True)]
    )
    scaling = fit_scaling(config.scaling, config.scaler, training_values)
    network_config = NetworkConfig(
        arch=config.arch,
        input_size=input_size,
        horizon=horizon,
        n_features=1 + 2 * len(features),
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        linear_skip=config.linear_skip,
    )
    device = resolve_device(config.device)
    initial_state, parent_version = None, None
    if warm_start:
        parent_version = registry.resolve(name, alias=PRODUCTION)
        parent, parent_predictor = load_predictor(registry, name, parent_version, torch.device("cpu"))
        if parent.network != network_config:
            raise InvalidInput(
                f"--warm-start needs the production version's network ({parent.network.model_dump()}); "
                "use --retrain to reuse its configuration"
            )
        initial_state = parent_predictor.network.state_dict()
    prepared = time.perf_counter()

    train_origins = block_origins(store, blocks, "train", input_size=input_size, horizon=horizon)
    validation_origins = block_origins(store, blocks, "validation", input_size=input_size, horizon=horizon)
    result = fit(
        store,
        train_origins,
        validation_origins,
        network_config,
        scaling,
        config,
        device,
        initial_state=initial_state,
        progress=progress,
    )
    trained = time.perf_counter()

    predictor = Predictor(result.network, scaling, device)
    period = mase_period(dataset.freq)
    scales = mase_scales(store, blocks, period)
    seasonal = season_length(dataset.freq)
    validation = evaluate_block(predictor, store, blocks, "validation", season_length=seasonal, scales=scales)
    test = evaluate_block(predictor, store, blocks, "test", season_length=seasonal, scales=scales)
    _require_finite(name, {"validation": validation.metrics, "test": test.metrics})  # before more work on it
    calibration = calibrate(conformity_scores(validation.actual, validation.forecast, validation.spread))
    calibration.coverage = empirical_coverage(test.actual, test.forecast, test.spread, calibration)
    report = {
        "epochs": [record.model_dump() for record in result.epochs],
        "samples": report_samples(dataset, store, test, calibration, input_size=input_size),
    }
    comparison = _production_on_same_test(registry, name, dataset, config, device) if promote else None
    evaluated = time.perf_counter()

    def build_manifest(version: int, digests: dict[str, str]) -> Manifest:
        return Manifest(
            name=name,
            version=version,
            created_at=datetime.now(UTC),
            network=network_config,
            training=config,
            freq=dataset.freq,
            features=features,
            scaling=scaling,
            season_length=seasonal,
            mase_period=period,
            data=DataFingerprint(
                sha256=dataset.fingerprint(),
                source=str(data),
                n_series=len(dataset.series),
                n_points=dataset.n_points,
                first_timestamp=min(s.timestamps[0] for s in dataset.series).to_pydatetime(),
                last_timestamp=max(s.timestamps[-1] for s in dataset.series).to_pydatetime(),
            ),
            metrics={"validation": validation.metrics, "test": test.metrics},
            intervals=calibration,
            epochs_run=len(result.epochs),
            best_epoch=result.best_epoch,
            timings={
                "prepare_s": round(prepared - started, 3),
                "train_s": round(trained - prepared, 3),
                "evaluate_s": round(evaluated - trained, 3),
                "train_windows_per_s": round(
                    sum(min(len(train_origins), config.windows_per_epoch) for _ in result.epochs)
                    / max(trained - prepared, 1e-9),
                    1,
                ),
            },
            provenance=Provenance(
                forecast=__version__, torch=torch.__version__, python=platform.python_version(), device=str(device)
            ),
            parent_version=parent_version,
            files=digests,
        )

    files = {WEIGHTS_FILE: weights_bytes(result.network), REPORT_FILE: json.dumps(report).encode()}
    with registry.locked(name):
        version = registry.publish(name, files, build_manifest)
        promoted, note = _move_production(
            registry, name, version, promotion_score(test.metrics["model"]), promote, comparison
        )
    manifest = registry.manifest(name, version)
    return TrainOutcome(name, version, registry.version_dir(name, version), manifest, promoted, note)


def _move_production(
    registry: Registry, name: str, version: int, new_score: Score, promote: bool, comparison: tuple[int, Score] | None
) -> tuple[bool, str]:
    """Runs under the model's lock. The first version becomes production; later ones only with
    --promote and only when they beat the production version on this job's test data."""
    current = registry.aliases(name).get(PRODUCTION)
    if current is None:
        registry.set_alias(name, PRODUCTION, version)
        return True, "first version of this model: now production"
    if not promote:
        return False, f"production stays at version {current} (pass --promote to compare and promote)"
    if comparison is None:
        return (
            False,
            f"production (version {current}) cannot be scored on this data (different horizon, frequency or input size); not promoted",
        )
    compared_version, (production_metric, production_error) = comparison
    if compared_version != current:
        return False, f"production moved to version {current} while training; not promoted"
    metric, new_error = new_score
    if metric != production_metric:  # cannot happen on the same data; refuse rather than compare unlike errors
        return False, f"test {metric} and production's {production_metric} are not comparable; not promoted"
    if new_error < production_error:
        registry.set_alias(name, PRODUCTION, version)
        return (
            True,
            f"test {metric} {new_error:.4f} beats production version {current} ({production_error:.4f}): promoted",
        )
    return (
        False,
        f"test {metric} {new_error:.4f} does not beat production version {current} ({production_error:.4f}): not promoted",
    )
