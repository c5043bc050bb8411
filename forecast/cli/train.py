"""`forecast train`: its flags, the training config they make (with a --config file and
--retrain's production settings), the run (here or data-parallel on --nproc processes), and
--if-degraded's decision before it."""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forecast.cli.accuracy import add_degradation_ratio, evaluation_request
from forecast.cli.common import registry_for
from forecast.config.training import TrainingConfig
from forecast.errors import InvalidInput, MissingCovariates
from forecast.registry.accuracy import write_record
from forecast.registry.store import PRODUCTION, Registry
from forecast.settings import get_settings

# flag -> TrainingConfig field; a flag left out keeps the config file's or production's value
_TRAIN_FLAGS = {
    "arch": "arch",
    "horizon": "horizon",
    "input_size": "input_size",
    "hidden_size": "hidden_size",
    "num_layers": "num_layers",
    "dropout": "dropout",
    "freq": "freq",
    "target": "target",
    "val_size": "val_size",
    "test_size": "test_size",
    "seed": "seed",
    "max_epochs": "max_epochs",
    "device": "device",
    "scaling": "scaling",
    "scaler": "scaler",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "patience": "patience",
    "loss": "loss",
    "segment_length": "segment_length",
    "ensemble": "ensemble",
    "refit": "refit",
    "past_covariates": "past_covariates",
    "future_covariates": "future_covariates",
    "static_covariates": "static_covariates",
    "static_data": "static_data",
    "timestamp_unit": "timestamp_unit",
}
# Settings that describe the data or the run, not the model: --retrain does not carry them over
# (an input size the job picked stays the one production has: its network's shape).
_PER_RUN_FIELDS = {"device", "seed", "input_size_picked"}


def add_train(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = commands.add_parser("train", help="fit a model on history and write a new registry version")
    _train_data_arguments(train)
    _train_network_arguments(train)
    _train_run_arguments(train)


def _train_data_arguments(train: argparse.ArgumentParser) -> None:
    """What to learn from: the file, its columns, frequency and blocks, and its covariates."""
    group = train.add_argument_group("data")
    group.add_argument(
        "--data", required=True, help="CSV or Parquet file (long or wide), or 'etth1' for the bundled set"
    )
    group.add_argument("--target", help="value column (long format) or series column (wide format)")
    group.add_argument("--freq", help="pandas frequency (inferred when left out)")
    group.add_argument(
        "--timestamp-unit",
        choices=["s", "ms", "us", "ns"],
        help="read a numeric timestamp column as Unix time in this unit (numbers are refused without one)",
    )
    group.add_argument("--val-size", type=int, help="validation points at the end of each series' history (default H)")
    group.add_argument("--test-size", type=int, help="test points at the end of each series (default H)")
    group.add_argument(
        "--past-covariates",
        type=_names,
        metavar="COL,...",
        help="columns known only up to the forecast origin (other sensors, lagged traffic)",
    )
    group.add_argument(
        "--future-covariates",
        type=_names,
        metavar="COL,...",
        help="columns known over the horizon too (temperature forecasts, holidays, planned prices)",
    )
    group.add_argument(
        "--static-covariates",
        type=_names,
        metavar="COL,...",
        help="one value per series (region, size); numbers are numeric unless named COL:categorical",
    )
    group.add_argument(
        "--static-data", metavar="FILE", help="CSV or Parquet of the static covariates, one row per series id"
    )


def _train_network_arguments(train: argparse.ArgumentParser) -> None:
    """What to fit and how: the network's shape, scaling, loss and optimisation (or a config file)."""
    group = train.add_argument_group("network and training")
    group.add_argument("--arch", choices=["rnn", "lstm", "gru"])
    group.add_argument("--horizon", type=int, help="steps to forecast (H)")
    group.add_argument(
        "--input-size", type=int, help="input window length (L; default: picked from the frequency and the history)"
    )
    group.add_argument("--hidden-size", type=int)
    group.add_argument("--num-layers", type=int)
    group.add_argument("--dropout", type=float)
    group.add_argument(
        "--scaling", choices=["window", "global"], help="default: global for one series, window for several"
    )
    group.add_argument("--scaler", choices=["standard", "minmax", "robust"], help="scaler of --scaling global")
    group.add_argument(
        "--segment-length", type=int, help="points per recurrent step (default: the season when it divides L)"
    )
    group.add_argument("--ensemble", type=int, help="members trained with different seeds, stored as one version")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--learning-rate", type=float)
    group.add_argument("--patience", type=int, help="epochs without validation improvement before stopping")
    group.add_argument("--seed", type=int)
    group.add_argument("--max-epochs", type=int)
    group.add_argument("--loss", choices=["mse", "mae", "mase", "msse"], help="training loss (default mae)")
    group.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after evaluation, fit again on the whole history and publish that network (default: on)",
    )
    group.add_argument("--config", help="JSON or TOML file with training settings (flags override it)")


def _train_run_arguments(train: argparse.ArgumentParser) -> None:
    """Where it goes and how it runs: the name, the registry, promotion, the device and processes."""
    group = train.add_argument_group("registry and run")
    group.add_argument("--name", required=True, help="model name in the registry")
    group.add_argument("--registry", help="registry root (default $FORECAST_REGISTRY or ./models)")
    group.add_argument(
        "--promote", action="store_true", help="move 'production' here if it beats production on this test data"
    )
    group.add_argument(
        "--force", action="store_true", help="let a version that does not beat the seasonal naive become production"
    )
    group.add_argument("--retrain", action="store_true", help="reuse the production version's configuration")
    group.add_argument("--warm-start", action="store_true", help="start from the production version's weights")
    group.add_argument(
        "--if-degraded",
        action="store_true",
        help="with --retrain: first score production on the data's points after its training, and retrain only "
        "when it lost to the seasonal naive there or degraded past --degradation-ratio (recorded either way)",
    )
    add_degradation_ratio(group)  # type: ignore[arg-type]  # an argument group takes the same arguments
    group.add_argument("--device", choices=["auto", "cpu", "cuda"])
    group.add_argument("--quiet", action="store_true", help="no progress bar")
    group.add_argument(
        "--nproc",
        type=int,
        help="train data-parallel on N processes of this machine, as torchrun --standalone --nproc-per-node N "
        "(under torchrun itself, torchrun's processes are used)",
    )


def _names(text: str) -> list[str]:
    """A comma-separated list of column names (blanks around them dropped)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got {text!r}")
    return names


def _read_config_file(path: str) -> dict[str, Any]:
    source = Path(path)
    try:
        text = source.read_text()
        raw = tomllib.loads(text) if source.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read config file {path!r}: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"config file {path!r} must hold a table/object of training settings")
    return {str(key).replace("-", "_"): value for key, value in raw.items()}


def training_config(args: argparse.Namespace, registry: Registry) -> TrainingConfig:
    settings: dict[str, Any] = {}
    if args.retrain or args.warm_start:
        production = registry.manifest(args.name, registry.resolve(args.name, alias=PRODUCTION))
        settings.update(production.training.model_dump(exclude=_PER_RUN_FIELDS))
    if args.config:
        settings.update(_read_config_file(args.config))
    for flag, field in _TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            settings[field] = value
    given = {**settings.get("network", {}), **settings}  # --retrain's network is nested
    missing = [f"--{name.replace('_', '-')}" for name in ("arch", "horizon") if name not in given]
    if missing:
        raise InvalidInput(
            f"missing {', '.join(missing)} (or pass --retrain to reuse the production version's configuration)"
        )
    try:
        return TrainingConfig.model_validate(settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidInput(f"training setting {where}: {error['msg']}") from exc


def command_train(args: argparse.Namespace) -> int:
    if args.if_degraded:
        if not _production_degraded(args):
            return 0
        args.command_line = [arg for arg in args.command_line if arg != "--if-degraded"]  # decided once, here
    # torch import is slow; only the commands that need it pay
    from forecast.training.distributed import join_world

    world = join_world()  # under torchrun: this process's rank, and the process group
    if args.nproc is not None and not world.distributed:
        if args.nproc < 1:
            raise InvalidInput(f"--nproc must be at least 1, not {args.nproc}")
        if args.nproc > 1:
            from forecast.training.launch import launch_local

            return launch_local(args.nproc, args.command_line)  # each process runs this command again
    from forecast.training.job import run_training_rank  # after the launch: the launching process needs none of it

    try:
        with world.step():  # every rank reads the same settings: a bad one is reported once
            registry = registry_for(args)
            config = training_config(args, registry)
        try:
            outcome = run_training_rank(
                args.data,
                args.name,
                config,
                registry,
                promote=args.promote,
                warm_start=args.warm_start,
                force=args.force,
                progress=not args.quiet,
                world=world,
            )
        except MissingCovariates as exc:
            raise _retrain_hint(exc, args, config) from exc
    finally:
        world.leave()
    if outcome is None:  # a torchrun rank other than 0: it trained its share; rank 0 publishes and reports
        return 0
    test = outcome.manifest.metrics["test"]
    print(f"wrote {outcome.name} version {outcome.version} to {outcome.path}")
    print(f"{outcome.promotion_note}")
    print(f"{'test':<16}{'mae':>14}{'mse':>14}{'rmse':>14}{'smape':>10}{'mase':>10}")
    for method in ("model", "naive", "seasonal_naive"):
        m = test[method]
        mase = "-" if m["mase"] is None else f"{m['mase']:.3f}"  # undefined when every history was constant
        # ' .6g': large errors (sales in the thousands, squared) keep their columns apart
        print(f"{method:<16}{m['mae']:>14.6g}{m['mse']:>14.6g}{m['rmse']:>14.6g}{m['smape']:>10.2f}{mase:>10}")
    coverage = ", ".join(f"{level}%: {value:.3f}" for level, value in outcome.manifest.intervals.coverage.items())
    print(f"interval coverage on test: {coverage}")
    return 0


def _production_degraded(args: argparse.Namespace) -> bool:
    """--if-degraded: production scored on the data's points after its training, the record
    written, and the decision said in one line."""
    from forecast.serving.watch import evaluate_version
    from forecast.training.retraining import retrain_decision

    if not args.retrain:
        raise InvalidInput("--if-degraded decides whether to retrain production: use it with --retrain")
    if os.environ.get("WORLD_SIZE"):
        raise InvalidInput("--if-degraded runs before training: use --nproc, or decide before starting torchrun")
    registry = registry_for(args)
    evaluation = evaluate_version(registry, get_settings(), evaluation_request(args))
    write_record(registry.storage, evaluation.record)
    decision = retrain_decision(evaluation.record)
    print(decision.reason)
    return decision.retrain


def _retrain_hint(exc: MissingCovariates, args: argparse.Namespace, config: TrainingConfig) -> MissingCovariates:
    """A missing covariate column under --retrain: say that the production version's covariates are kept."""
    if not args.retrain:
        return exc
    needed = config.covariate_columns.in_data_file
    return MissingCovariates(f"{exc} (--retrain keeps the production version's covariates {needed})")
