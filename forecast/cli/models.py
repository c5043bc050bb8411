"""`forecast models`: list, show or promote registry versions."""

from __future__ import annotations

import argparse
import json

from forecast.cli.common import registry_for
from forecast.registry.store import PRODUCTION


def add_models(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    models = commands.add_parser("models", help="list, show or promote registry versions")
    models.add_argument("--registry", help="registry root (default $FORECAST_REGISTRY or ./models)")
    actions = models.add_subparsers(dest="action")
    listing = actions.add_parser("list", help="every model with its versions and aliases")
    show = actions.add_parser("show", help="one model's versions and metrics")
    show.add_argument("name")
    promote = actions.add_parser("promote", help="point an alias at a version")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", default=PRODUCTION)
    for action in (listing, show, promote):  # `models list --registry X` as well as `models --registry X list`
        action.add_argument("--registry", default=argparse.SUPPRESS, help="registry root")


def command_models(args: argparse.Namespace) -> int:
    registry = registry_for(args)
    if args.action in (None, "list"):
        names = registry.list_models()
        if not names:
            print(f"no models in {registry.location}")
        for name in names:
            aliases = registry.aliases(name)
            print(f"{name}: versions {registry.versions(name)}, aliases {json.dumps(aliases, sort_keys=True)}")
        return 0
    if args.action == "show":
        versions = registry.versions(args.name)
        if not versions:
            registry.resolve(args.name)  # raises ModelNotFound with the known names
        aliases = registry.aliases(args.name)
        print(f"{args.name}: aliases {json.dumps(aliases, sort_keys=True)}")
        for version in versions:
            manifest = registry.manifest(args.name, version)
            test = manifest.metrics["test"]
            tags = [alias for alias, v in aliases.items() if v == version]
            print(
                f"  v{version} {manifest.arch} L={manifest.input_size} H={manifest.horizon} freq={manifest.freq} "
                f"created {manifest.created_at:%Y-%m-%d %H:%M} test mse {test['model']['mse']:.4f} "
                f"(naive {test['naive']['mse']:.4f}, seasonal naive {test['seasonal_naive']['mse']:.4f})"
                + (f" [{', '.join(tags)}]" if tags else "")
            )
            if not manifest.covariates.empty:
                kinds = manifest.covariates.kinds()
                print(
                    "      covariates: "
                    + "; ".join(f"{kind} {', '.join(names)}" for kind, names in kinds.items() if names)
                )
        return 0
    with registry.locked(args.name):
        registry.set_alias(args.name, args.alias, args.version)
    print(f"{args.name}: alias {args.alias} -> version {args.version}")
    return 0
