"""`forecast predict`: batch scoring of a data file into a CSV or Parquet table of forecasts,
through the serving pipeline in this process (`forecast.serving.batch`), no server needed.

The table is written whole or not at all (a temporary file renamed into place). Series that
could not be forecast go to a side file, `<out>.failed.csv` (series id, reason), and the exit
code is 1 when there are any (0 when every series was forecast; 2, as for every command, when
nothing could be done).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tqdm import tqdm

from forecast.cli.common import registry_for
from forecast.errors import InvalidInput
from forecast.settings import get_settings

if TYPE_CHECKING:
    from forecast.serving.batch import BatchForecasts

FORMATS = (".csv", ".parquet")


def add_predict(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    command = commands.add_parser("predict", help="forecast every series of a file into a CSV or Parquet table")
    command.add_argument("--data", required=True, help="CSV or Parquet file with the version's columns")
    command.add_argument("--name", required=True)
    command.add_argument("--version", type=int, help="default: the production alias")
    command.add_argument("--out", required=True, help="FORECASTS.csv or FORECASTS.parquet")
    command.add_argument(
        "--levels", type=float, nargs="*", default=[80.0, 95.0], help="interval levels (default 80 95; none: --levels)"
    )
    command.add_argument("--static-data", help="the per-series file of static covariates, if not the training one")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.add_argument("--registry", help="registry root (default $FORECAST_REGISTRY or ./models)")


def failures_path(out: Path) -> Path:
    return out.with_name(out.name + ".failed.csv")


def _write(frame: pd.DataFrame, out: Path) -> None:
    """Atomically: a reader sees the old file or the whole new one."""
    handle, scratch = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(handle)
    try:
        if out.suffix == ".parquet":
            frame.to_parquet(scratch, index=False)
        else:
            frame.to_csv(scratch, index=False)
        os.replace(scratch, out)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def command_predict(args: argparse.Namespace) -> int:
    from forecast.serving.batch import ScoringRequest, forecast_file

    out = Path(args.out)
    if out.suffix not in FORMATS:
        raise InvalidInput(f"--out {args.out}: write .csv or .parquet")
    if not out.parent.is_dir():
        raise InvalidInput(f"--out {args.out}: the folder {out.parent} does not exist")
    settings = get_settings()
    registry = registry_for(args, settings)
    request = ScoringRequest(
        name=args.name, data=args.data, version=args.version, levels=tuple(args.levels), static_data=args.static_data
    )
    # shown once forecasting takes a moment: a refused file prints its one line alone
    with tqdm(desc="forecasting", unit="series", file=sys.stderr, disable=args.quiet, delay=1.0) as bar:
        result = forecast_file(registry, settings, request, advance=bar.update)
    _write(result.frame, out)
    _report(result, out)
    return 1 if result.failures else 0


def _report(result: BatchForecasts, out: Path) -> None:
    side = failures_path(out)
    rate = result.series / result.seconds if result.seconds > 0 else float("inf")
    manifest = result.manifest
    print(
        f"{manifest.name} version {manifest.version}: forecast {result.series} series x {manifest.horizon} steps in "
        f"{result.seconds:.2f} s ({rate:,.0f} series/s); wrote {out}"
    )
    if result.failures:
        pd.DataFrame(
            {"series_id": [f.series_id for f in result.failures], "reason": [f.reason for f in result.failures]}
        ).to_csv(side, index=False)
        first = result.failures[0]
        print(
            f"{len(result.failures)} series not forecast, listed with the reason in {side} "
            f"(the first, {first.series_id!r}: {first.reason})",
            file=sys.stderr,
        )
    else:
        side.unlink(missing_ok=True)  # a list from an earlier run would mislead
