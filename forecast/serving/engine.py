"""The inference engine: a cache of loaded model versions, each behind its own dynamic batcher,
with alias resolution and hot reload from the registry.

A watcher polls the registry every `reload_seconds`. A new version or a moved alias is loaded
in the background (forecast/serving/versions.py: verified and warmed up), and only then does the
alias switch to it. Versions load side by side: a refresh waits for them up to `reload_seconds`
(at start-up, for all), and one that takes longer goes on loading while the refresh switches
the others; its alias switches as soon as it is loaded.
Requests hold a lease on the version they resolved, so a version that lost its alias is retired
only after its last request has finished.

The registry's last good state keeps serving: a scan that cannot read the registry, or finds it
empty, changes nothing; a model whose aliases.json is torn keeps its last good aliases; a version
that fails to load (any exception) leaves its alias on the version that serves today and is
retried with backoff, at once when its files change. Readiness and metrics say what is degraded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch

from forecast.errors import ModelNotFound, RegistryCorrupt, VersionLoading
from forecast.model.devices import resolve_device
from forecast.registry.manifest import Manifest
from forecast.registry.store import PRODUCTION, Registry, aliased_version, check_name
from forecast.serving.accuracy_watch import AccuracyGauges
from forecast.serving.failures import LoadFailure, VersionKey
from forecast.serving.health import EngineHealth, ScanTracker, model_problems, publish_problems
from forecast.serving.pipeline import ForwardFactory, network_forward
from forecast.serving.scan import RegistryScan, scan_registry, short_error, wanted_aliases
from forecast.serving.versions import LoadedVersions, ServedModel
from forecast.settings import Settings

logger = logging.getLogger(__name__)


class Engine:
    def __init__(
        self, registry: Registry, settings: Settings, forward_factory: ForwardFactory = network_forward
    ) -> None:
        """`forward_factory` builds each loaded version's forward pass: the network's, or a
        stand-in (the serving benchmark's no-op, which measures the HTTP path alone)."""
        self.registry = registry
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        self._versions = LoadedVersions(registry, settings, resolve_device(settings.device), forward_factory)
        self._aliases: dict[str, dict[str, int]] = {}  # what is served: model -> alias -> version
        self._wanted: dict[str, dict[str, int]] = {}  # the last good read of each aliases.json
        self._model_errors: dict[str, str] = {}  # models whose files the last scan could not read
        self._alias_errors: dict[tuple[str, str], str] = {}  # (model, alias) whose wanted version is not served
        self._alias_loading: dict[tuple[str, str], int] = {}  # (model, alias) -> its wanted version, still loading
        self._pending: set[VersionKey] = set()  # loaded by the refresh under way, not yet aliased
        self._last_scan: RegistryScan | None = None  # the last usable one
        self._refreshes_that_changed = 0
        self._scans = ScanTracker()
        self._accuracy = AccuracyGauges(registry)
        self._accuracy_read_at = -math.inf
        self._watcher: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # the watcher's nap, ended early by a load
        self._left_loading: set[VersionKey] = set()  # wanted versions a refresh left loading
        self._versions.on_loaded = self._loaded_late
        self._refreshing = asyncio.Lock()  # the watcher's refreshes and a caller's never interleave
        self._started = False

    @property
    def device(self) -> torch.device:
        return self._versions.device

    @property
    def settings(self) -> Settings:
        """One copy, the loaded versions': the batchers and the retirement read it too."""
        return self._versions.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._versions.settings = settings

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Started and holding a registry state: a server that never could read its registry has
        nothing to serve; one that lost it since serves its last good state and stays ready."""
        return self._started and self._scans.health().ever_ok

    async def start(self) -> None:
        try:
            await self.refresh()
        except Exception:  # a bug, not a registry fault (those are confined): keep the server up
            logger.exception("first registry scan failed; the watcher keeps trying")
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="registry-watcher")
        self._started = True

    async def stop(self) -> None:
        """Readiness off, stop watching, serve what is queued, release the thread."""
        self._started = False
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self._versions.stop()

    async def _watch(self) -> None:
        while True:
            await self._nap()
            try:
                await self.refresh()
            except Exception:
                logger.exception("registry refresh failed; serving what is loaded")

    async def _nap(self) -> None:
        """Until the next poll is due, or a version finished loading after its refresh moved on."""
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        alarm = loop.call_later(self.settings.reload_seconds, self._wake_up)
        try:
            await wake
        finally:
            alarm.cancel()
            self._wake = None

    def _loaded_late(self, key: VersionKey) -> None:
        """A version a refresh left loading is ready: refresh now to switch its alias."""
        if key in self._left_loading:
            self._left_loading.discard(key)
            self._wake_up()

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # ---- the registry's state --------------------------------------------------------------

    async def _scan(self) -> RegistryScan:
        try:
            return await asyncio.to_thread(scan_registry, self.registry)
        except Exception as exc:  # scan_registry confines what it expects; this is the rest
            return RegistryScan(error=short_error(exc))

    async def refresh(self) -> None:
        """Load what the aliases point at, switch them once loaded, retire what nothing uses."""
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        scan = await self._scan()
        if self._record_scan(scan):
            state = wanted_aliases(self._wanted, scan)
            for name, problem in state.model_errors.items():
                if self._model_errors.get(name) != problem:
                    logger.error("model %s: %s; serving its last good aliases", name, problem)
            before = (self._last_scan, self._wanted, self._aliases, self._alias_errors)
            self._last_scan = scan
            self._wanted, self._model_errors = state.aliases, state.model_errors
            self._versions.failures.forget_models_except(set(scan.models))
            served, self._alias_errors, self._alias_loading = await self._serve_wanted(scan)
            for name, targets in served.items():
                if self._aliases.get(name) != targets:
                    logger.info("serving %s with aliases %s", name, targets)
            self._aliases = served
            if before != (self._last_scan, self._wanted, self._aliases, self._alias_errors):
                self._refreshes_that_changed += 1
            self._pending.clear()
            self._retire_unused()  # not while the registry is unreadable: nothing could reload
            if time.monotonic() - self._accuracy_read_at >= self.settings.accuracy_refresh_s:
                self._accuracy_read_at = time.monotonic()
                await asyncio.to_thread(self._accuracy.refresh, sorted(self._aliases))
        self._publish_health()

    def _record_scan(self, scan: RegistryScan) -> bool:
        """Whether the scan may change what is served. An unreadable registry may not; nor may an
        empty one while models are served: a remount, a hiccup or a folder renamed away look like
        that for a moment, while deleting every model on purpose is rare (a restart applies it)."""
        error = scan.error
        if error is None and not scan.models and self._wanted:
            error = f"the registry {self.registry.location} holds no models"
        was_failing = self._scans.consecutive_failures > 0
        self._scans.record(error)
        if error is not None and not was_failing:
            logger.error("registry scan unusable, serving the last good state: %s", error)
        elif error is None and was_failing:
            logger.info("registry readable again")
        return error is None

    async def _serve_wanted(
        self, scan: RegistryScan
    ) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], str], dict[tuple[str, str], int]]:
        """Each wanted alias on its wanted version once that is loaded, else on the version it
        serves today; why each alias that is not as wanted is not; and which wait for a version
        still loading (not a problem yet)."""
        problems, still_loading = await self._load_targets(scan)
        served: dict[str, dict[str, int]] = {}
        alias_errors: dict[tuple[str, str], str] = {}
        loading: dict[tuple[str, str], int] = {}
        for name, targets in self._wanted.items():
            current = self._aliases.get(name, {})
            if name in self._model_errors:  # its files are unreadable: as it was
                served[name] = {alias: current[alias] for alias in targets if alias in current}
                continue
            served[name] = {}
            for alias, version in targets.items():
                key = (name, version)
                if key in still_loading:  # not a problem yet: the alias keeps what it serves, silently
                    loading[(name, alias)] = version
                elif key in problems:
                    alias_errors[(name, alias)] = problems[key]
                else:
                    served[name][alias] = version
                    continue
                if alias in current:
                    served[name][alias] = current[alias]  # keep serving the version that works
        return served, alias_errors, loading

    async def _load_targets(self, scan: RegistryScan) -> tuple[dict[VersionKey, str], set[VersionKey]]:
        """Load every wanted version side by side; for each that cannot be served, why; and
        which are still loading. Waits up to `reload_seconds` (at start-up, for all): a slow load
        goes on in the background, and its end wakes the watcher."""
        problems: dict[VersionKey, str] = {}
        still_loading: set[VersionKey] = set()
        loads: dict[VersionKey, asyncio.Task[ServedModel | LoadFailure]] = {}
        for name, targets in self._wanted.items():
            if name in self._model_errors:
                continue
            for version in set(targets.values()):
                key = (name, version)
                if version not in scan.models[name].versions and key not in self._versions:
                    problems[key] = f"version {version} is not in the registry"
                elif isinstance(loaded := self._versions.loading(name, version), ServedModel):
                    self._pending.add(key)
                else:
                    loads[key] = loaded
        if loads:
            # Never cancels: what is not done by then goes on loading.
            await asyncio.wait(loads.values(), timeout=self.settings.reload_seconds if self._started else None)
        for key, task in loads.items():
            outcome = task.result() if task.done() else None
            if outcome is None:
                still_loading.add(key)
                self._left_loading.add(key)
            elif isinstance(outcome, LoadFailure):
                problems[key] = outcome.error
            else:
                self._pending.add(key)
        return problems, still_loading

    def _publish_health(self) -> None:
        publish_problems(self.health().problems)

    def health(self) -> EngineHealth:
        """The registry's scan state and every wanted alias that is not served as wanted."""
        failures = self._versions.failures
        problems = model_problems(
            self._model_errors, self._alias_errors, self._wanted, self._aliases, failures, time.monotonic()
        )
        return EngineHealth(registry=self._scans.health(), problems=problems)

    def _retire_unused(self, keep: VersionKey | None = None) -> None:
        """Unload what no alias, no refresh under way and no request holds (`keep` is one a
        request is about to lease)."""
        held = {(name, version) for name, targets in self._aliases.items() for version in targets.values()}
        held |= self._pending
        if keep is not None:
            held.add(keep)
        self._versions.retire(held, self._aliases.keys())

    # ---- requests --------------------------------------------------------------------------

    @property
    def generation(self) -> tuple[int, int]:
        """Changes whenever what the model listing shows may have: a scan that found the
        registry changed, an alias switched, a version loaded, unloaded or refused."""
        return self._refreshes_that_changed, self._versions.changes

    @property
    def last_scan(self) -> RegistryScan | None:
        """The registry as last read usably (None before the first usable scan)."""
        return self._last_scan

    def served_models(self) -> list[str]:
        return sorted(self._aliases)

    def is_loaded(self, name: str, version: int) -> bool:
        return (name, version) in self._versions

    def served_aliases(self, name: str) -> dict[str, int]:
        return dict(self._aliases.get(name, {}))

    def wanted_aliases(self, name: str) -> dict[str, int] | None:
        """The model's aliases as last read from a readable aliases.json; None if never."""
        wanted = self._wanted.get(name)
        return None if wanted is None else dict(wanted)

    def refused_versions(self, name: str) -> set[int]:
        """Versions that failed to load as their files are now (until a retry succeeds)."""
        return self._versions.refused(name)

    def loaded_manifests(self, name: str) -> list[Manifest]:
        return [served.manifest for served in self._versions.of_model(name)]

    @asynccontextmanager
    async def lease(
        self, name: str, version: int | None = None, alias: str | None = None
    ) -> AsyncIterator[ServedModel]:
        """The loaded version a request means, held until the request is done with it."""
        served = await self._resolve(name, version, alias)
        served.leases += 1
        served.last_used = time.monotonic()
        try:
            yield served
        finally:
            served.leases -= 1
            served.last_used = time.monotonic()

    async def _resolve(self, name: str, version: int | None, alias: str | None) -> ServedModel:
        check_name(name)
        if version is None:
            targets = self._aliases.get(name)
            if targets is None:
                raise ModelNotFound(f"model {name!r} is not served; known models: {sorted(self._aliases)}")
            wanted = check_name(alias, "alias") if alias is not None else PRODUCTION
            if wanted not in targets:
                if (loading := self._alias_loading.get((name, wanted))) is not None:
                    raise VersionLoading(
                        f"model {name!r} alias {wanted!r} points at version {loading}, which is still loading; "
                        "retry shortly"
                    )
                problem = self._alias_errors.get((name, wanted)) or self._model_errors.get(name)
                if problem is not None:
                    raise RegistryCorrupt(f"model {name!r} alias {wanted!r} cannot be served: {problem}")
            version = aliased_version(name, targets, alias)
        if (served := self._versions.get((name, version))) is not None:
            return served
        # An explicit version nobody aliases: check it exists, then load it on demand.
        await asyncio.to_thread(self.registry.resolve, name, version)
        outcome = await self._versions.ensure(name, version)
        if isinstance(outcome, LoadFailure):
            named = outcome.error.startswith(f"model {name!r} version {version}")  # most library errors are
            raise RegistryCorrupt(outcome.error if named else f"model {name!r} version {version}: {outcome.error}")
        self._retire_unused(keep=(name, version))
        return outcome
