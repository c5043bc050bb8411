"""The inference engine: a cache of loaded model versions, each behind its own dynamic batcher,
with alias resolution and hot reload from the registry.

A watcher polls the registry every `reload_seconds`. A new version or a moved alias is loaded
in the background (checksums verified), warmed up with one forward pass, and only then does the
alias switch to it. Requests hold a lease on the version they resolved, so a version that lost
its alias is retired only after its last request has finished. A version that fails to load is
logged and counted, and the alias keeps pointing at the version that serves today.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import torch

from forecast.errors import ForecastError, ModelNotFound, VersionNotFound
from forecast.model.devices import resolve_device
from forecast.registry.manifest import Manifest
from forecast.registry.store import Registry, aliased_version, check_name
from forecast.registry.weights import load_predictor
from forecast.serving.batcher import DynamicBatcher
from forecast.serving.pipeline import ForecastPipeline, ForwardFactory, network_forward
from forecast.serving.telemetry import LOAD_FAILURES, MODELS_LOADED
from forecast.settings import Settings, max_batch_size

logger = logging.getLogger(__name__)

# A version loaded for explicit `"version": N` requests, with no alias, is unloaded after this.
_IDLE_UNLOAD_S = 300.0


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
        self._loaded: dict[tuple[str, int], ServedModel] = {}
        self._aliases: dict[str, dict[str, int]] = {}
        self._failed: set[tuple[str, int]] = set()
        self._load_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self.ready = False

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="registry-watcher")
        self.ready = True

    async def stop(self) -> None:
        """Readiness off, stop watching, serve what is queued, release the thread."""
        self.ready = False
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await asyncio.gather(*(served.pipeline.batcher.stop() for served in self._loaded.values()))
        self._executor.shutdown(wait=True)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            try:
                await self.refresh()
            except Exception:
                logger.exception("registry scan failed; serving what is loaded")

    # ---- loading ---------------------------------------------------------------------------

    def _scan(self) -> dict[str, dict[str, int]]:
        scan = {}
        for name in self.registry.list_models():
            try:
                scan[name] = self.registry.aliases(name)
            except ForecastError as exc:
                logger.error("cannot read aliases of %s: %s", name, exc)
        return scan

    async def refresh(self) -> None:
        """Load what the aliases point at, switch them once loaded, retire what nothing uses."""
        scan = await asyncio.to_thread(self._scan)
        aliases: dict[str, dict[str, int]] = {}
        for name, targets in scan.items():
            current = self._aliases.get(name, {})
            aliases[name] = {}
            for alias, version in targets.items():
                if await self._ensure_loaded(name, version) is not None:
                    aliases[name][alias] = version
                elif alias in current:
                    aliases[name][alias] = current[alias]  # keep serving the version that works
        changed = {n: a for n, a in aliases.items() if self._aliases.get(n) != a}
        self._aliases = aliases
        for name, targets in changed.items():
            logger.info("serving %s with aliases %s", name, targets)
        await self._retire_unused()

    async def _ensure_loaded(self, name: str, version: int) -> ServedModel | None:
        key = (name, version)
        if key in self._loaded:
            return self._loaded[key]
        if key in self._failed:
            return None
        async with self._load_lock:
            if key in self._loaded:
                return self._loaded[key]
            try:
                served = await asyncio.to_thread(self._load, name, version)
                await asyncio.get_running_loop().run_in_executor(self._executor, served.pipeline.warm_up)
            except ForecastError as exc:
                self._failed.add(key)
                LOAD_FAILURES.labels(name).inc()
                logger.error("version %d of %s failed to load and is not served: %s", version, name, exc)
                return None
            served.pipeline.batcher.start()
            self._loaded[key] = served
            MODELS_LOADED.set(len(self._loaded))
            logger.info("loaded %s version %d on %s", name, version, self.device)
            return served

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

    async def _retire_unused(self) -> None:
        aliased = {(name, version) for name, targets in self._aliases.items() for version in targets.values()}
        now = time.monotonic()
        for key, served in list(self._loaded.items()):
            recently_used = now - served.last_used < _IDLE_UNLOAD_S and key[0] in self._aliases
            if key in aliased or served.leases > 0 or recently_used:
                continue
            del self._loaded[key]
            await served.pipeline.batcher.stop()
            MODELS_LOADED.set(len(self._loaded))
            logger.info("unloaded %s version %d", *key)

    # ---- requests --------------------------------------------------------------------------

    def served_models(self) -> list[str]:
        return sorted(self._aliases)

    def is_loaded(self, name: str, version: int) -> bool:
        return (name, version) in self._loaded

    def served_aliases(self, name: str) -> dict[str, int]:
        return dict(self._aliases.get(name, {}))

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

    async def _resolve(self, name: str, version: int | None, alias: str | None) -> ServedModel:
        check_name(name)
        if version is None:
            targets = self._aliases.get(name)
            if targets is None:
                raise ModelNotFound(f"model {name!r} is not served; known models: {sorted(self._aliases)}")
            version = aliased_version(name, targets, alias)
        if (name, version) in self._loaded:
            return self._loaded[(name, version)]
        # An explicit version nobody aliases: check it exists, then load it on demand.
        await asyncio.to_thread(self.registry.resolve, name, version)
        served = await self._ensure_loaded(name, version)
        if served is None:
            raise VersionNotFound(f"model {name!r} version {version} cannot be loaded (see the server log)")
        return served
