"""What the `forecast` subcommands share: the registry a command works on."""

from __future__ import annotations

import argparse

from forecast.registry.store import Registry, open_registry
from forecast.settings import Settings, get_settings


def registry_for(args: argparse.Namespace, settings: Settings | None = None) -> Registry:
    """`--registry`, else FORECAST_REGISTRY (./models by default)."""
    settings = settings or get_settings()
    return open_registry(args.registry or settings.registry, settings)
