"""`forecast backtest` and `forecast evaluate`: a version's accuracy on a data file, through the
serving pipeline in this process (`forecast.serving.local`), the same code as POST /v1/backtest.

`backtest` prints a table (or JSON, or CSV) and writes nothing. `evaluate` scores the production
version on the points after its training data and appends an accuracy record to the registry.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from typing import TYPE_CHECKING

from forecast.cli.common import registry_for
from forecast.registry.accuracy import DEFAULT_DEGRADATION_RATIO, write_record
from forecast.settings import get_settings

# The serving pipeline imports torch, which is slow: only the commands that run it pay, on use.
if TYPE_CHECKING:
    from forecast.serving.backtest import BacktestResult, MetricTable
    from forecast.serving.watch import EvaluationRequest


_METRICS = ("mae", "rmse", "smape", "mase")


def add_backtest(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    command = commands.add_parser("backtest", help="rolling-origin evaluation of a version on a data file")
    command.add_argument("--data", required=True, help="CSV or Parquet file with the version's columns")
    command.add_argument("--name", required=True)
    command.add_argument("--version", type=int, help="default: the production alias")
    command.add_argument("--origins", type=int, help="the last K origins of each series (default 1)")
    command.add_argument("--last-points", type=int, help="instead: every origin inside the last N points")
    command.add_argument("--stride", type=int, default=1, help="steps between origins (default 1)")
    command.add_argument("--horizon", type=int, help="default: the model's")
    command.add_argument("--levels", type=float, nargs="*", default=[80.0], help="interval levels to cover")
    command.add_argument("--output", choices=("table", "json", "csv"), default="table")
    command.add_argument("--static-data", help="the per-series file of static covariates, if not the training one")
    command.add_argument("--registry", help="registry root (default $FORECAST_REGISTRY or ./models)")


def add_evaluate(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    command = commands.add_parser(
        "evaluate", help="score production on data that arrived after its training; record it in the registry"
    )
    command.add_argument("--data", required=True, help="recent data: the new points and the history before them")
    command.add_argument("--name", required=True)
    command.add_argument("--version", type=int, help="default: the production alias")
    command.add_argument("--stride", type=int, default=1, help="steps between origins (default 1)")
    add_degradation_ratio(command)
    command.add_argument("--static-data", help="the per-series file of static covariates, if not the training one")
    command.add_argument("--registry", help="registry root (default $FORECAST_REGISTRY or ./models)")


def add_degradation_ratio(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--degradation-ratio",
        type=float,
        default=DEFAULT_DEGRADATION_RATIO,
        help=f"fresh MASE / test MASE above which production counts as degraded (default {DEFAULT_DEGRADATION_RATIO})",
    )


def command_backtest(args: argparse.Namespace) -> int:
    from forecast.serving.backtest import BacktestLimits, BacktestSpec, backtest, result_body
    from forecast.serving.local import load_for_version, posted_series, served_here

    settings = get_settings()
    registry = registry_for(args, settings)
    version = registry.resolve(args.name, args.version)
    manifest = registry.manifest(args.name, version)
    series = posted_series(load_for_version(args.data, manifest, args.static_data), manifest)
    spec = BacktestSpec(
        horizon=args.horizon,
        levels=tuple(args.levels),
        origins=args.origins,
        last_points=args.last_points,
        stride=args.stride,
    )
    limits = BacktestLimits(settings.max_backtest_windows, settings.max_backtest_values)

    async def run() -> BacktestResult:
        async with served_here(registry, settings, args.name, version) as pipeline:
            return await backtest(pipeline, series, spec, limits=limits, timeout_s=settings.request_timeout_s)

    result = asyncio.run(run())
    if args.output == "json":
        print(json.dumps(result_body(manifest, result), indent=2))
    elif args.output == "csv":
        print(_csv(result), end="")
    else:
        print(f"{args.name} version {version} ({manifest.arch}), horizon {result.horizon}, {result.windows} forecasts")
        print(_table(result))
    return 0


def _rows(result: BacktestResult) -> list[tuple[str, int, MetricTable]]:
    rows = [(s.series_id, len(s.origins), s.metrics) for s in result.series]
    return [*rows, ("all", result.windows, result.metrics)]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _csv(result: BacktestResult) -> str:
    from forecast.serving.backtest import METHODS  # imported already: the command ran the backtest

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["series_id", "origins", *(f"{method}_{metric}" for method in METHODS for metric in _METRICS)])
    for series_id, origins, metrics in _rows(result):
        writer.writerow(
            [series_id, origins, *(_number(metrics[method][metric]) for method in METHODS for metric in _METRICS)]
        )
    return out.getvalue()


def _table(result: BacktestResult) -> str:
    header = ["series", "origins", "MASE", "sMAPE", "MAE", "naive MASE", "seasonal naive MASE"]
    lines = []
    for series_id, origins, metrics in _rows(result):
        model = metrics["model"]
        lines.append(
            [
                series_id[:30],
                str(origins),
                _number(model["mase"]),
                _number(model["smape"]),
                _number(model["mae"]),
                _number(metrics["naive"]["mase"]),
                _number(metrics["seasonal_naive"]["mase"]),
            ]
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    text = [" ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *lines]]
    coverage = ", ".join(f"{level}%: {share:.3f}" for level, share in result.coverage.items())
    return "\n".join(text) + (f"\ncoverage {coverage}" if coverage else "")


def evaluation_request(args: argparse.Namespace) -> EvaluationRequest:
    from forecast.serving.watch import EvaluationRequest

    return EvaluationRequest(
        name=args.name,
        data=args.data,
        version=getattr(args, "version", None) if args.command == "evaluate" else None,
        stride=getattr(args, "stride", 1),
        static_data=args.static_data,
        degradation_ratio=args.degradation_ratio,
    )


def command_evaluate(args: argparse.Namespace) -> int:
    from forecast.serving.watch import evaluate_version, summary

    settings = get_settings()
    registry = registry_for(args, settings)
    evaluation = evaluate_version(registry, settings, evaluation_request(args))
    written = write_record(registry.storage, evaluation.record)
    print(summary(evaluation))
    print(f"accuracy record {written.record} written to {registry.storage.where(f'{args.name}/accuracy')}")
    if evaluation.left_out:
        print(f"left out (fewer fresh points than the horizon): {', '.join(evaluation.left_out[:20])}", file=sys.stderr)
    return 0
