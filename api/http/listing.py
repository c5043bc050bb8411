"""The model listing (GET /v1/models), built once per registry state and served from memory.

Dashboards poll the listing every few seconds, and on a registry of thousands of models one
build (manifests read and validated, a summary per model, the JSON, its ETag) takes seconds.
So the listing is drawn from the engine's registry scan, the one the server polls anyway: it is
at most one poll (`FORECAST_RELOAD_SECONDS`) behind the registry. It is rebuilt only when the
engine's `generation` says something it shows changed, and then only for the models whose
versions, aliases or served state changed (a version's manifest never changes; each is read
once). Concurrent callers share one build, which runs on a worker thread, and every page's
bytes and ETag are kept until the next change: a poll costs a dictionary lookup.

One model's broken files never break the listing for everyone: a torn aliases.json lists the
aliases last read (the ones being served), a version whose manifest is invalid or that failed to
load is left out (the server log, /readyz and the metrics name it), and while the registry
cannot be read the listing of its last good scan is served, with the versions loaded in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from api.http.schemas import ModelSummary, VersionSummary
from forecast.errors import NotFound, RegistryCorrupt
from forecast.registry.accuracy import AccuracyRecord
from forecast.registry.manifest import Manifest
from forecast.registry.store import Registry
from forecast.serving.engine import Engine
from forecast.serving.failures import VersionKey

logger = logging.getLogger(__name__)

# The most models on one page of GET /v1/models; `next_after` names where the next one starts.
MAX_PAGE_MODELS = 1000


def model_summary(
    name: str,
    manifests: Mapping[int, Manifest],
    aliases: dict[str, int],
    served: dict[str, int],
    accuracy: list[AccuracyRecord] | None = None,
) -> ModelSummary:
    """One model as the listing and GET /v1/models/{name} show it."""
    versions = [
        VersionSummary(
            version=version,
            arch=manifest.arch,
            input_size=manifest.input_size,
            horizon=manifest.horizon,
            freq=manifest.freq,
            created_at=manifest.created_at,
            aliases=sorted(a for a, v in aliases.items() if v == version),
            test_metrics=manifest.metrics.get("test", {}),
            covariates={kind: names for kind, names in manifest.covariates.kinds().items() if names},
        )
        for version, manifest in sorted(manifests.items())
    ]
    return ModelSummary(name=name, versions=versions, aliases=aliases, served=served, accuracy=accuracy or [])


@dataclass(frozen=True, slots=True)
class ModelState:
    """What one model's entry depends on: equal states, equal entries."""

    versions: frozenset[int]  # on disk, as last scanned
    aliases: tuple[tuple[str, int], ...]  # as the registry means them (the last good read)
    served: tuple[tuple[str, int], ...]
    loaded: frozenset[int]  # in memory: listed even while the registry cannot be read
    refused: frozenset[int]  # failed to load as their files are now: not listed as usable


@dataclass(slots=True)
class _Snapshot:
    """The engine's state, copied on the event loop (it changes there while a build runs)."""

    states: dict[str, ModelState]
    loaded: dict[VersionKey, Manifest]


def snapshot(engine: Engine) -> _Snapshot:
    scan = engine.last_scan
    names = set(scan.models) if scan is not None else set()
    names |= set(engine.served_models())
    states: dict[str, ModelState] = {}
    loaded: dict[VersionKey, Manifest] = {}
    for name in names:
        in_memory = engine.loaded_manifests(name)
        loaded.update({(name, manifest.version): manifest for manifest in in_memory})
        scanned = scan.models.get(name) if scan is not None else None
        aliases = engine.wanted_aliases(name)
        if aliases is None:
            aliases = scanned.aliases if scanned is not None and scanned.aliases is not None else {}
        served = engine.served_aliases(name)
        states[name] = ModelState(
            versions=scanned.versions if scanned is not None else frozenset(),
            aliases=tuple(sorted(aliases.items())),
            served=tuple(sorted(served.items())),
            loaded=frozenset(manifest.version for manifest in in_memory),
            refused=frozenset(engine.refused_versions(name)),
        )
    return _Snapshot(states, loaded)


@dataclass(slots=True)
class _Entry:
    state: ModelState
    json: bytes | None  # the model's summary; None: no usable version to list
    complete: bool  # every manifest could be read (else read again at the next change)


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    etag: str


@dataclass(slots=True)
class ModelListing:
    """The listing of one server process's engine (see the module's docstring)."""

    engine: Engine
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _manifests: dict[VersionKey, Manifest] = field(default_factory=dict)
    _names: list[str] = field(default_factory=list)  # listed, sorted
    _pages: dict[tuple[str | None, int], Page] = field(default_factory=dict)
    _generation: tuple[int, int] | None = None
    _build: asyncio.Task[None] | None = None

    async def page(self, after: str | None, limit: int) -> Page:
        """The models after `after` (by name), at most `limit` of them."""
        while self._generation != self.engine.generation:
            if self._build is None:
                self._build = asyncio.get_running_loop().create_task(self._rebuild())
            await asyncio.shield(self._build)  # a caller that hangs up leaves the build to the others
        key = (after, limit)
        if (page := self._pages.get(key)) is None:
            if len(self._pages) >= 64:  # callers choose the keys: keep a bounded few
                self._pages.clear()
            page = self._pages[key] = self._render(after, limit)
        return page

    async def _rebuild(self) -> None:
        try:
            generation = self.engine.generation
            await asyncio.to_thread(self._apply, snapshot(self.engine))
            self._generation = generation
            self._pages.clear()
        finally:
            self._build = None

    def _apply(self, state: _Snapshot) -> None:
        registry = self.engine.registry
        for name in set(self._entries) - set(state.states):
            del self._entries[name]
        for name, model in state.states.items():
            entry = self._entries.get(name)
            if entry is None or entry.state != model or not entry.complete:
                self._entries[name] = self._entry(registry, name, model, state.loaded)
        wanted = {(name, version) for name, model in state.states.items() for version in model.versions}
        for key in set(self._manifests) - wanted:
            del self._manifests[key]
        self._names = sorted(name for name, entry in self._entries.items() if entry.json is not None)

    def _entry(self, registry: Registry, name: str, model: ModelState, loaded: dict[VersionKey, Manifest]) -> _Entry:
        manifests = {version: loaded[(name, version)] for version in model.loaded}
        complete = True
        for version in model.versions - model.refused - model.loaded:
            key = (name, version)
            if (manifest := self._manifests.get(key)) is None:
                try:
                    manifest = self._manifests[key] = registry.manifest(name, version)
                except (RegistryCorrupt, NotFound, OSError) as exc:
                    logger.debug("version %d of %s left out of the listing: %s", version, name, exc)
                    complete = False
                    continue
            manifests[version] = manifest
        if not manifests:
            return _Entry(model, None, complete)
        summary = model_summary(name, manifests, dict(model.aliases), dict(model.served))
        return _Entry(model, summary.model_dump_json().encode(), complete)

    def _render(self, after: str | None, limit: int) -> Page:
        names = _page_of(self._names, after, limit)
        more = bool(names) and names[-1] != (self._names[-1] if self._names else None)
        parts = (self._entries[name].json or b"" for name in names)
        next_after = orjson.dumps(names[-1] if more else None)
        body = b'{"models":[' + b",".join(parts) + b'],"next_after":' + next_after + b"}"
        return Page(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _page_of(names: list[str], after: str | None, limit: int) -> list[str]:
    start = 0 if after is None else bisect_right(names, after)
    return names[start : start + limit]
