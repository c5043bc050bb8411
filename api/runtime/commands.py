"""The `forecast serve` subcommand, contributed to the `forecast` command by this package.

`forecast.cli` may not import `api` (the layering contract), so it finds this through the
`forecast.commands` entry point group (pyproject.toml). Only argparse is imported here: the
server's imports (torch, uvicorn) are paid by `serve` alone, not by `forecast models list`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def register_serve(commands: argparse._SubParsersAction) -> Callable[[argparse.Namespace], int]:  # type: ignore[type-arg]
    serve = commands.add_parser("serve", help="start the forecasting API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--registry", help="registry root (default $FORECAST_REGISTRY or ./models)")
    serve.add_argument(
        "--workers",
        type=_workers,
        help="serving processes sharing the port (default $FORECAST_WORKERS; 0: one per usable core)",
    )
    return command_serve


def command_serve(args: argparse.Namespace) -> int:
    from api.runtime.server import serve

    return serve(host=args.host, port=args.port, registry=args.registry, workers=args.workers)


def _workers(text: str) -> int:
    count = int(text)
    if count < 0:
        raise argparse.ArgumentTypeError(f"--workers must be 0 (one per usable core) or more, not {count}")
    return count
