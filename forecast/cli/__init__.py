"""The `forecast` command: one parser, each subcommand's handler (train.py, models.py,
accuracy.py for backtest and evaluate, predict.py; `serve` from the api package), and the one
rule for failures.

Any expected failure prints one readable line to stderr and exits 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

from forecast.cli.accuracy import add_backtest, add_evaluate, command_backtest, command_evaluate
from forecast.cli.models import add_models, command_models
from forecast.cli.predict import add_predict, command_predict
from forecast.cli.train import add_train, command_train
from forecast.errors import ForecastError, PeerFailed
from forecast.registry.store import os_error_text

logger = logging.getLogger("forecast")

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The parser and each subcommand's handler; packages installed beside this one add
    subcommands through the `forecast.commands` entry points (`api` adds `serve`)."""
    parser = argparse.ArgumentParser(
        prog="forecast", description="RNN/LSTM/GRU forecasting: train, serve, manage models"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train(commands)
    add_models(commands)
    add_backtest(commands)
    add_evaluate(commands)
    add_predict(commands)
    handlers: dict[str, Handler] = {
        "train": command_train,
        "models": command_models,
        "backtest": command_backtest,
        "evaluate": command_evaluate,
        "predict": command_predict,
    }
    for entry in entry_points(group="forecast.commands"):
        handlers[entry.name] = entry.load()(commands)
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    args.command_line = list(sys.argv[1:] if argv is None else argv)  # what `train --nproc` runs in each process
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return handlers[args.command](args)
    except PeerFailed:  # another torchrun rank printed the reason; saying it again would only repeat it
        return 2
    except ForecastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a permission, a store gone away: one line, no traceback
        print(f"error: {os_error_text(exc)}; nothing half-written is left behind", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
