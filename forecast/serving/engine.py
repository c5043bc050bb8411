"""The inference engine: a cache of loaded model versions, each behind its own dynamic batcher,
with alias resolution and hot reload from the registry.

A watcher polls the registry every `reload_seconds`. A new version or a moved alias is loaded
in the background (checksums verified, the manifest checked against its folder and weights),
warmed up with one request through the serving path, and only then does the alias switch to it.
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import torch

from forecast.errors import ForecastError, ModelNotFound, RegistryCorrupt
from forecast.model.devices import resolve_device
from forecast.registry.manifest import Manifest
from forecast.registry.store import PRODUCTION, Registry, VersionFiles, aliased_version, check_name
from forecast.registry.weights import load_predictor
from forecast.serving.batcher import DynamicBatcher
from forecast.serving.eviction import versions_to_unload
from forecast.serving.failures import LoadFailure, LoadFailures, VersionKey
from forecast.serving.health import EngineHealth, ScanTracker, model_problems, publish_problems
from forecast.serving.pipeline import ForecastPipeline, ForwardFactory, ReleasedOnUnload, network_forward
from forecast.serving.scan import RegistryScan, scan_registry, short_error, wanted_aliases
from forecast.serving.telemetry import LOAD_FAILURES, MODELS_LOADED
from forecast.serving.warmup import warm_up
from forecast.settings import Settings, max_batch_size

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ServedModel:
    pipeline: ForecastPipeline
    leases: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def manifest(self) -> Manifest:
        return self.pipeline.manifest


class Engine:
    def __init__(
        self, registry: Registry, settings: Settings, forward_factory: ForwardFactory = network_forward
    ) -> None:
        """`forward_factory` builds each loaded version's forward pass: the network's, or a
        stand-in (the serving benchmark's no-op, which measures the HTTP path alone)."""
        self.registry = registry
        self.settings = settings
        self._forward_factory = forward_factory
        self.device = resolve_device(settings.device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        # One inference thread per device: forward passes never overlap on it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"inference-{self.device.type}")
        self._loaded: dict[VersionKey, ServedModel] = {}
        self._aliases: dict[str, dict[str, int]] = {}  # what is served: model -> alias -> version
        self._wanted: dict[str, dict[str, int]] = {}  # the last good read of each aliases.json
        self._model_errors: dict[str, str] = {}  # models whose files the last scan could not read
        self._alias_errors: dict[tuple[str, str], str] = {}  # (model, alias) whose wanted version is not served
        self._pending: set[VersionKey] = set()  # loaded by the refresh under way, not yet aliased
        self._failures = LoadFailures(settings.reload_seconds, settings.load_retry_max_s)
        self._scans = ScanTracker()
        self._stopping: set[asyncio.Task[None]] = set()
        self._load_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._started = False

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
        await asyncio.gather(*(served.pipeline.batcher.stop() for served in self._loaded.values()), *self._stopping)
        self._executor.shutdown(wait=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            try:
                await self.refresh()
            except Exception:
                logger.exception("registry refresh failed; serving what is loaded")

    # ---- the registry's state --------------------------------------------------------------

    async def _scan(self) -> RegistryScan:
        try:
            return await asyncio.to_thread(scan_registry, self.registry)
        except Exception as exc:  # scan_registry confines what it expects; this is the rest
            return RegistryScan(error=short_error(exc))

    async def refresh(self) -> None:
        """Load what the aliases point at, switch them once loaded, retire what nothing uses."""
        scan = await self._scan()
        if self._record_scan(scan):
            state = wanted_aliases(self._wanted, scan)
            for name, problem in state.model_errors.items():
                if self._model_errors.get(name) != problem:
                    logger.error("model %s: %s; serving its last good aliases", name, problem)
            self._wanted, self._model_errors = state.aliases, state.model_errors
            self._failures.forget_models_except(set(scan.models))
            served, self._alias_errors = await self._serve_wanted(scan)
            for name, targets in served.items():
                if self._aliases.get(name) != targets:
                    logger.info("serving %s with aliases %s", name, targets)
            self._aliases = served
            self._pending.clear()
            self._retire_unused()  # not while the registry is unreadable: nothing could reload
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

    async def _serve_wanted(self, scan: RegistryScan) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], str]]:
        """Each wanted alias on its wanted version once that is loaded, else on the version it
        serves today; and why each alias that is not as wanted is not."""
        served: dict[str, dict[str, int]] = {}
        alias_errors: dict[tuple[str, str], str] = {}
        for name, targets in self._wanted.items():
            current = self._aliases.get(name, {})
            if name in self._model_errors:  # its files are unreadable: as it was
                served[name] = {alias: current[alias] for alias in targets if alias in current}
                continue
            served[name] = {}
            for alias, version in targets.items():
                problem = await self._serve_target(name, version, scan.models[name].versions)
                if problem is None:
                    served[name][alias] = version
                    continue
                alias_errors[(name, alias)] = problem
                if alias in current:
                    served[name][alias] = current[alias]  # keep serving the version that works
        return served, alias_errors

    async def _serve_target(self, name: str, version: int, on_disk: frozenset[int]) -> str | None:
        """Why an alias target cannot be served, or None once it is loaded."""
        if version not in on_disk and (name, version) not in self._loaded:
            return f"version {version} is not in the registry"
        outcome = await self._ensure_loaded(name, version)
        if isinstance(outcome, LoadFailure):
            return outcome.error
        self._pending.add((name, version))
        return None

    def _publish_health(self) -> None:
        publish_problems(self.health().problems)

    def health(self) -> EngineHealth:
        """The registry's scan state and every wanted alias that is not served as wanted."""
        problems = model_problems(
            self._model_errors, self._alias_errors, self._wanted, self._aliases, self._failures, time.monotonic()
        )
        return EngineHealth(registry=self._scans.health(), problems=problems)

    # ---- loading ---------------------------------------------------------------------------

    async def _ensure_loaded(self, name: str, version: int) -> ServedModel | LoadFailure:
        key = (name, version)
        if key in self._loaded:
            return self._loaded[key]
        # A version that failed with these same files waits for its retry without waiting for
        # the lock or re-reading its weights: a stat of two files is all it costs.
        files = await asyncio.to_thread(self.registry.version_files, name, version)
        if (failure := self._failures.blocking(key, files, time.monotonic())) is not None:
            return failure
        async with self._load_lock:
            if key in self._loaded:
                return self._loaded[key]
            files = await asyncio.to_thread(self.registry.version_files, name, version)
            if (failure := self._failures.blocking(key, files, time.monotonic())) is not None:
                return failure
            try:
                served = await asyncio.to_thread(self._load, name, version)
                await asyncio.get_running_loop().run_in_executor(self._executor, warm_up, served.pipeline)
            except Exception as exc:  # any failure stays with this version: torch, OOM, I/O, a bug
                return self._record_failure(key, files, exc)
            self._failures.clear(key)
            served.pipeline.batcher.start()
            self._loaded[key] = served
            MODELS_LOADED.set(len(self._loaded))
            logger.info("loaded %s version %d on %s", name, version, self.device)
            return served

    def _record_failure(self, key: VersionKey, files: VersionFiles, exc: Exception) -> LoadFailure:
        """Logged (with the traceback when unexpected) and counted once per distinct failure; a
        retry of the same files that fails alike is only a debug line."""
        name, version = key
        failure, news = self._failures.record(key, files, short_error(exc), time.monotonic())
        if not news:
            logger.debug("version %d of %s failed again (attempt %d)", version, name, failure.attempts)
            return failure
        LOAD_FAILURES.labels(name).inc()
        logger.error(
            "version %d of %s failed to load and is not served (retried in %.1fs, or when its files change): %s",
            version, name, failure.retry_at - time.monotonic(), failure.error,
            exc_info=None if isinstance(exc, ForecastError) else exc,
        )  # fmt: skip
        return failure

    def _load(self, name: str, version: int) -> ServedModel:
        loaded = load_predictor(self.registry, name, version, self.device)
        forward = self._forward_factory(loaded.manifest, loaded.predictor)
        batcher = DynamicBatcher(
            forward,
            self._executor,
            max_batch_size=max_batch_size(self.settings, self.device.type),
            max_wait_ms=self.settings.max_wait_ms,
            queue_limit=self.settings.queue_limit,
            labels=(name, str(version)),
        )
        return ServedModel(pipeline=ForecastPipeline(loaded.manifest, batcher))

    def _retire_unused(self, keep: VersionKey | None = None) -> None:
        """Unload by the one rule (forecast/serving/eviction.py). Synchronous up to the batchers'
        stops, so nothing between a lookup and its lease sees a version vanish."""
        held = {(name, version) for name, targets in self._aliases.items() for version in targets.values()}
        held |= self._pending | {key for key, served in self._loaded.items() if served.leases > 0}
        if keep is not None:
            held.add(keep)
        # A model gone from the registry (every scanned model has an entry) is idle at once.
        last_used = {
            key: served.last_used if key[0] in self._aliases else -math.inf for key, served in self._loaded.items()
        }
        victims = versions_to_unload(
            last_used,
            held,
            now=time.monotonic(),
            idle_s=self.settings.idle_unload_s,
            cap=self.settings.max_loaded_versions,
        )
        for key in victims:
            served = self._loaded.pop(key)
            task = asyncio.get_running_loop().create_task(self._unload(served))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
            logger.info("unloaded %s version %d", *key)
        MODELS_LOADED.set(len(self._loaded))

    @staticmethod
    async def _unload(served: ServedModel) -> None:
        await served.pipeline.batcher.stop()  # what is queued is served first
        if isinstance(forward := served.pipeline.batcher.run_batch, ReleasedOnUnload):
            await asyncio.to_thread(forward.release)

    # ---- requests --------------------------------------------------------------------------

    def served_models(self) -> list[str]:
        return sorted(self._aliases)

    def is_loaded(self, name: str, version: int) -> bool:
        return (name, version) in self._loaded

    def served_aliases(self, name: str) -> dict[str, int]:
        return dict(self._aliases.get(name, {}))

    def wanted_aliases(self, name: str) -> dict[str, int] | None:
        """The model's aliases as last read from a readable aliases.json; None if never."""
        wanted = self._wanted.get(name)
        return None if wanted is None else dict(wanted)

    def refused_versions(self, name: str) -> set[int]:
        """Versions that failed to load as their files are now (until a retry succeeds)."""
        return self._failures.failed_versions(name) - {v for (model, v) in self._loaded if model == name}

    def loaded_manifests(self, name: str) -> list[Manifest]:
        return [served.manifest for (model, _), served in sorted(self._loaded.items()) if model == name]

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
                problem = self._alias_errors.get((name, wanted)) or self._model_errors.get(name)
                if problem is not None:
                    raise RegistryCorrupt(f"model {name!r} alias {wanted!r} cannot be served: {problem}")
            version = aliased_version(name, targets, alias)
        if (name, version) in self._loaded:
            return self._loaded[(name, version)]
        # An explicit version nobody aliases: check it exists, then load it on demand.
        await asyncio.to_thread(self.registry.resolve, name, version)
        outcome = await self._ensure_loaded(name, version)
        if isinstance(outcome, LoadFailure):
            named = outcome.error.startswith(f"model {name!r} version {version}")  # most library errors are
            raise RegistryCorrupt(outcome.error if named else f"model {name!r} version {version}: {outcome.error}")
        self._retire_unused(keep=(name, version))
        return outcome
