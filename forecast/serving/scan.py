"""One poll of the registry, tolerant of faults, and what the server should want from it.

A scan never raises for the registry's sake: an unreadable root, an unreadable model folder or a
torn aliases.json is recorded beside the result. `wanted_aliases` then keeps the last good
aliases of every model whose files could not be read, so a fault on disk never changes what is
served; only a readable answer does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from forecast.errors import ForecastError
from forecast.registry.store import Registry

logger = logging.getLogger(__name__)

# Errors travel to /readyz and the log; a hostile file must not make either huge.
_MAX_ERROR_CHARS = 500


def short_error(exc: BaseException | str) -> str:
    """One line, bounded; an unexpected exception keeps its class (a bare MemoryError has no text)."""
    text = str(exc)
    if isinstance(exc, BaseException) and not isinstance(exc, ForecastError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


@dataclass(slots=True)
class ModelScan:
    """One model folder as read now."""

    versions: frozenset[int] = frozenset()
    aliases: dict[str, int] | None = None  # None: no aliases.json, or it could not be read
    error: str | None = None  # why the versions or the aliases could not be read


@dataclass(slots=True)
class RegistryScan:
    models: dict[str, ModelScan] = field(default_factory=dict)
    error: str | None = None  # the root could not be listed


def scan_registry(registry: Registry) -> RegistryScan:
    try:
        names = registry.model_folders()
    except OSError as exc:
        return RegistryScan(error=short_error(f"cannot list the registry {registry.location}: {exc}"))
    scan = RegistryScan()
    for name in names:
        model = _scan_model(registry, name)
        if model.versions or model.error is not None:
            scan.models[name] = model  # a folder without versions yet is no model (a trainer's first)
    return scan


def _scan_model(registry: Registry, name: str) -> ModelScan:
    try:
        versions = frozenset(registry.versions(name))
    except OSError as exc:
        return ModelScan(error=short_error(f"cannot list the versions: {exc}"))
    try:
        aliases = registry.read_aliases(name)
    except (ForecastError, OSError) as exc:
        return ModelScan(versions=versions, error=short_error(exc))
    return ModelScan(versions=versions, aliases=aliases)


@dataclass(slots=True)
class WantedState:
    aliases: dict[str, dict[str, int]]  # model -> alias -> version, as the registry means it
    model_errors: dict[str, str]  # models served from their last good aliases, and why


def wanted_aliases(previous: dict[str, dict[str, int]], scan: RegistryScan) -> WantedState:
    """The aliases to serve after a usable scan. A model whose folder or aliases.json could not
    be read keeps its previous aliases; so does one whose aliases.json vanished (a non-atomic
    rewrite deletes before it writes; an operator who means "serve nothing" writes `{}`). A model
    folder that is gone from a readable registry was removed, and is no longer wanted."""
    wanted: dict[str, dict[str, int]] = {}
    errors: dict[str, str] = {}
    for name, model in scan.models.items():
        kept = previous.get(name, {})
        if model.error is not None:
            wanted[name], errors[name] = dict(kept), model.error
        elif model.aliases is None and kept:
            wanted[name] = dict(kept)
            errors[name] = "aliases.json is missing; serving the aliases last read"
        else:
            wanted[name] = dict(model.aliases or {})
    return WantedState(aliases=wanted, model_errors=errors)
