"""The shared inference process of one device (FORECAST_INFERENCE=per_device): every serving
worker sends it the batches its own batchers formed, and it runs them on the device, merging
the batches that arrived meanwhile for the same version into one forward pass.

Why: on a GPU a forward pass costs about the same at 256 series as at 8, so N workers each
running their own small batches on one GPU (time-sliced between N CUDA contexts) waste it,
while the HTTP side is Python and needs the N processes. This process keeps one CUDA context
and one model copy per device, as Triton and LitServe do behind their front ends.

- The workers do everything else (HTTP, validation, windowing, hot reload, leases, intervals);
  this process only loads versions from the same registry (checksums verified again) and runs
  the network. A version is loaded on the first batch that names it and unloaded once every
  worker that used it released it or disconnected.
- One inference thread: a forward pass takes the oldest queued batch and every other queued
  batch of its version, up to `MERGED_SERIES_MAX` series, so batches merge exactly when the
  device is busy. A failed forward answers an error to each batch in it.
- Messages are forecast.serving.wire's (no pickle); connections authenticate with the key the
  supervisor gave both sides, on a Unix socket in a private folder.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Listener
from pathlib import Path

import numpy as np
import torch

from forecast.model.predictor import Predictor
from forecast.registry.store import Registry, open_registry
from forecast.registry.weights import load_predictor
from forecast.serving.failures import VersionKey
from forecast.serving.pipeline import raw_windows
from forecast.serving.scan import short_error
from forecast.serving.telemetry import DEVICE_BATCH_SIZE
from forecast.serving.wire import Message, WireError, decode, describe, encode
from forecast.settings import Settings

logger = logging.getLogger(__name__)

# A forward message carries the five window arrays of forecast.serving.pipeline.WindowArrays.
WINDOW_ARRAYS = 5
# Series in one merged forward pass at most: each worker's batch is at most max_batch_size; the
# merge takes what is queued up to this, which bounds the device memory of one pass.
MERGED_SERIES_MAX = 4096


@dataclass(slots=True)
class _Batch:
    """One worker's batch, waiting for the device."""

    key: VersionKey
    predictor: Predictor
    arrays: tuple[np.ndarray, ...]  # the window arrays (forecast.serving.pipeline.WindowArrays), B rows each
    answer: Callable[[bytes], None]
    id: int

    @property
    def rows(self) -> int:
        return len(self.arrays[0])


@dataclass(slots=True)
class _Version:
    predictor: Predictor
    holders: set[int] = field(default_factory=set)  # connections that used it and did not release it


class DeviceServer:
    def __init__(self, registry: Registry, device: torch.device) -> None:
        self._registry = registry
        self._device = device
        self._versions: dict[VersionKey, _Version] = {}
        self._loading: dict[VersionKey, threading.Lock] = {}
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)
        self._batches: deque[_Batch] = deque()

    # ---- versions ----------------------------------------------------------------------------

    def _predictor(self, key: VersionKey, holder: int) -> Predictor:
        """The version's predictor, loaded on the first use (one load per version at a time,
        while other versions' batches keep running)."""
        with self._lock:
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._versions:
                    self._versions[key].holders.add(holder)
                    return self._versions[key].predictor
            loaded = load_predictor(self._registry, *key, self._device)
            with self._lock:
                self._versions[key] = _Version(loaded.predictor, {holder})
            logger.info("loaded %s version %d on %s", *key, self._device)
            return loaded.predictor

    def _release(self, key: VersionKey, holder: int) -> None:
        with self._lock:
            version = self._versions.get(key)
            if version is None:
                return
            version.holders.discard(holder)
            if not version.holders:
                del self._versions[key]  # its load lock stays: a lock per version ever served
                logger.info("unloaded %s version %d", *key)

    # ---- one worker's connection ---------------------------------------------------------------

    def serve_connection(self, connection: Connection, holder: int) -> None:
        """Read a worker's messages until it disconnects (or sends what does not decode), then
        release every version it held."""
        send_lock = threading.Lock()

        def answer(data: bytes) -> None:
            with send_lock, contextlib.suppress(OSError):  # the worker is gone: the reader below ends too
                connection.send_bytes(data)

        try:
            while True:
                message, arrays = decode(connection.recv_bytes())
                key = (message.model, message.version)
                if message.op == "release":
                    self._release(key, holder)
                elif message.op == "forward" and len(arrays) == WINDOW_ARRAYS:
                    try:
                        predictor = self._predictor(key, holder)
                    except Exception as exc:  # the version cannot load: this batch's error
                        answer(encode(Message(op="error", id=message.id, error=short_error(exc))))
                        continue
                    with self._queued:
                        self._batches.append(_Batch(key, predictor, tuple(arrays), answer, message.id))
                        self._queued.notify()
                else:
                    raise WireError(f"unexpected {message.op!r} message with {len(arrays)} arrays")
        except WireError as exc:
            logger.error("closing a worker's connection: %s", exc)
        except (EOFError, OSError):
            pass  # the worker disconnected
        finally:
            connection.close()
            with self._lock:
                held = [key for key, version in self._versions.items() if holder in version.holders]
            for key in held:
                self._release(key, holder)

    # ---- the device -----------------------------------------------------------------------------

    def _next_forward(self) -> list[_Batch]:
        """The oldest batch and the other queued batches of its version, up to the limit."""
        with self._queued:
            while not self._batches:
                self._queued.wait()
            first = self._batches.popleft()
            merged, rest, series = [first], deque[_Batch](), first.rows
            while self._batches:
                batch = self._batches.popleft()
                if batch.key == first.key and series + batch.rows <= MERGED_SERIES_MAX:
                    merged.append(batch)
                    series += batch.rows
                else:
                    rest.append(batch)
            self._batches = rest
            return merged

    def run_inference(self) -> None:
        """The device's one inference thread, for the life of the process."""
        while True:
            merged = self._next_forward()
            name, version = merged[0].key
            DEVICE_BATCH_SIZE.labels(name, str(version)).observe(sum(batch.rows for batch in merged))
            try:
                arrays = [np.concatenate([batch.arrays[part] for batch in merged]) for part in range(WINDOW_ARRAYS)]
                prediction = merged[0].predictor.predict(raw_windows(arrays))
            except Exception as exc:  # OOM, a bug: every batch of the pass is told, the process lives on
                logger.exception("forward pass of %d batches of %s version %d failed", len(merged), name, version)
                for batch in merged:
                    batch.answer(encode(Message(op="error", id=batch.id, error=short_error(exc))))
                continue
            start = 0
            for batch in merged:
                rows = slice(start, start + batch.rows)
                outputs = prediction.rows(rows).arrays()
                batch.answer(encode(Message(op="result", id=batch.id, arrays=describe(outputs)), outputs))
                start = rows.stop


def run_device_process(settings: Settings, address: str, authkey: bytes, device: str) -> None:
    """The process's main: listen on `address` and serve workers until the supervisor stops it."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s")
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    server = DeviceServer(open_registry(settings.registry, settings), torch.device(device))
    threading.Thread(target=server.run_inference, name=f"inference-{device}", daemon=True).start()
    # A predecessor killed at any moment leaves its socket file behind (the folder is private).
    Path(address).unlink(missing_ok=True)
    with Listener(address, family="AF_UNIX", authkey=authkey) as listener:
        logger.info("inference process for %s listening", device)
        holder = 0
        while True:
            try:
                connection = listener.accept()
            except Exception as exc:  # a peer without the key, or one that hung up mid-handshake
                logger.warning("refused a connection to the inference process: %s", short_error(exc))
                continue
            holder += 1
            threading.Thread(
                target=server.serve_connection, args=(connection, holder), name=f"worker-link-{holder}", daemon=True
            ).start()
