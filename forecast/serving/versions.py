"""The model versions one server holds in memory: each read from the registry (checksums
verified, the manifest checked against its folder and weights), warmed up with one request
through the serving path, and served by its own dynamic batcher on the one inference thread.

Each version loads on its own task: a slow or failing load never holds up another version's
(a load of the same version is shared). A version that fails to load (any exception) is
remembered with its files and retried with backoff, at once when they change
(forecast/serving/failures.py). Versions nothing holds are
unloaded by the one rule (forecast/serving/eviction.py), after their queued requests are served.
The engine (forecast/serving/engine.py) decides which versions are held: what the aliases point
at, and what requests lease.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from forecast.errors import ForecastError
from forecast.registry.manifest import Manifest
from forecast.registry.store import Registry, VersionFiles
from forecast.registry.weights import rebuild, verified_weights
from forecast.serving.batcher import DynamicBatcher
from forecast.serving.eviction import versions_to_unload
from forecast.serving.failures import LoadFailure, LoadFailures, VersionKey
from forecast.serving.pipeline import ForecastPipeline, ForwardFactory, ReleasedOnUnload
from forecast.serving.scan import short_error
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


class LoadedVersions:
    def __init__(
        self, registry: Registry, settings: Settings, device: torch.device, forward_factory: ForwardFactory
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.device = device
        self._forward_factory = forward_factory
        # One inference thread per device: forward passes never overlap on it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"inference-{device.type}")
        self._loaded: dict[VersionKey, ServedModel] = {}
        self.failures = LoadFailures(settings.reload_seconds, settings.load_retry_max_s)
        self._loading: dict[VersionKey, asyncio.Task[ServedModel | LoadFailure]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self.on_loaded: Callable[[VersionKey], None] = lambda key: None  # the engine's cue to alias it
        self.changes = 0  # counts loads, unloads and failures: what the model listing depends on

    def get(self, key: VersionKey) -> ServedModel | None:
        return self._loaded.get(key)

    def __contains__(self, key: VersionKey) -> bool:
        return key in self._loaded

    def of_model(self, name: str) -> list[ServedModel]:
        """The model's loaded versions, oldest first."""
        return [served for (model, _), served in sorted(self._loaded.items()) if model == name]

    def refused(self, name: str) -> set[int]:
        """Versions that failed to load as their files are now (until a retry succeeds)."""
        return self.failures.failed_versions(name) - {v for (model, v) in self._loaded if model == name}

    async def stop(self) -> None:
        """Give up the loads under way, serve what is queued, then release the inference thread."""
        for task in self._loading.values():
            task.cancel()
        await asyncio.gather(*self._loading.values(), return_exceptions=True)
        await asyncio.gather(*(served.pipeline.batcher.stop() for served in self._loaded.values()), *self._stopping)
        self._executor.shutdown(wait=True)

    # ---- loading ---------------------------------------------------------------------------

    async def ensure(self, name: str, version: int) -> ServedModel | LoadFailure:
        """The version loaded and serving, or why it is not (its failure, until a retry is due)."""
        loaded = self.loading(name, version)
        return loaded if isinstance(loaded, ServedModel) else await asyncio.shield(loaded)

    def loading(self, name: str, version: int) -> ServedModel | asyncio.Task[ServedModel | LoadFailure]:
        """The version if it is loaded, else its load: the one under way, or a new one. A caller
        that stops waiting (a refresh that moves on) leaves the load running for the next."""
        key = (name, version)
        if (served := self._loaded.get(key)) is not None:
            return served
        if (task := self._loading.get(key)) is None:
            task = asyncio.get_running_loop().create_task(self._load_once(key), name=f"load-{name}-{version}")
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return task

    async def _load_once(self, key: VersionKey) -> ServedModel | LoadFailure:
        name, version = key
        # A version that failed with these same files waits for its retry without re-reading its
        # weights: a stat of two files is all it costs.
        files = await asyncio.to_thread(self.registry.version_files, name, version)
        if (failure := self.failures.blocking(key, files, time.monotonic())) is not None:
            return failure
        try:
            served = await asyncio.to_thread(self._load, name, version)
            await asyncio.get_running_loop().run_in_executor(self._executor, warm_up, served.pipeline)
        except Exception as exc:  # any failure stays with this version: torch, OOM, I/O, a bug
            return self._record_failure(key, files, exc)
        self.failures.clear(key)
        served.pipeline.batcher.start()
        self._loaded[key] = served
        self.changes += 1
        MODELS_LOADED.set(len(self._loaded))
        logger.info("loaded %s version %d on %s", name, version, self.device)
        self.on_loaded(key)
        return served

    def _record_failure(self, key: VersionKey, files: VersionFiles, exc: Exception) -> LoadFailure:
        """Logged (with the traceback when unexpected) and counted once per distinct failure; a
        retry of the same files that fails alike is only a debug line."""
        name, version = key
        failure, news = self.failures.record(key, files, short_error(exc), time.monotonic())
        self.changes += 1
        if not news:
            logger.debug("version %d of %s failed again (attempt %d)", version, name, failure.attempts)
            return failure
        LOAD_FAILURES.labels(name).inc()
        logger.error(
            "version %d of %s failed to load and is not served (retried in %.1fs, or when its files change): %s",
            version,
            name,
            failure.retry_at - time.monotonic(),
            failure.error,
            exc_info=None if isinstance(exc, ForecastError) else exc,
        )
        return failure

    def _load(self, name: str, version: int) -> ServedModel:
        weights = verified_weights(self.registry, name, version)
        manifest = weights.manifest
        forward = self._forward_factory(manifest, lambda: rebuild(self.registry, weights, self.device).predictor)
        batcher = DynamicBatcher(
            forward,
            self._executor,
            max_batch_size=max_batch_size(self.settings, self.device.type),
            max_wait_ms=self.settings.max_wait_ms,
            queue_limit=self.settings.queue_limit,
            caller_limit=self.settings.queue_limit_per_client,
            labels=(name, str(version)),
        )
        return ServedModel(pipeline=ForecastPipeline(manifest, batcher))

    # ---- unloading -------------------------------------------------------------------------

    def retire(self, held: set[VersionKey], served_models: Collection[str]) -> None:
        """Unload what neither `held` nor a lease holds, by the one rule (forecast/serving/eviction.py).
        Synchronous up to the batchers' stops, so nothing between a lookup and its lease sees a
        version vanish. A model not in `served_models` (gone from the registry) is idle at once."""
        held = held | {key for key, served in self._loaded.items() if served.leases > 0}
        last_used = {
            key: served.last_used if key[0] in served_models else -math.inf for key, served in self._loaded.items()
        }
        idle_s, cap = self.settings.idle_unload_s, self.settings.max_loaded_versions
        victims = versions_to_unload(last_used, held, now=time.monotonic(), idle_s=idle_s, cap=cap)
        for key in victims:
            served = self._loaded.pop(key)
            self.changes += 1
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
