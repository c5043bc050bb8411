"""A serving worker's side of the shared inference process (forecast/serving/device_process.py):
each loaded version's forward pass sends its batch there and waits for the answer.

One connection per worker, shared by its batchers and its loads: answers are matched to
their batches by number, so a version loading on the device does not hold up another's
batches. A lost connection (the process restarting) fails the batches in flight with a 503
and Retry-After, and the next batch connects again; the new process reloads what it is sent.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection

import numpy as np

from forecast.errors import InferenceUnavailable
from forecast.model.predictor import Prediction
from forecast.registry.manifest import Manifest
from forecast.serving.pipeline import BuildNetwork, Forward, ForwardFactory, WindowArrays, WindowForecast, stack_windows
from forecast.serving.requests import Window
from forecast.serving.scan import short_error
from forecast.serving.wire import Message, WireError, decode, describe, encode

logger = logging.getLogger(__name__)

_RETRY_AFTER_S = 1.0
# How long a worker waits for the inference process to listen: at start-up both import torch
# (its first loads wait rather than fail and back off); after a lost link the batches in
# flight fail at once, and each new one waits briefly before its 503.
_FIRST_CONNECT_PATIENCE_S = 60.0
_RECONNECT_PATIENCE_S = 2.0


class DeviceLinkError(RuntimeError):
    """The inference process refused a batch (its version failed to load there, or the pass failed)."""


class DeviceClient:
    def __init__(self, address: str, authkey: bytes, answer_timeout_s: float) -> None:
        self._address = address
        self._authkey = authkey
        self._answer_timeout_s = answer_timeout_s
        self._connection: Connection | None = None
        self._lock = threading.Lock()  # the connection, its sends and the pending answers
        self._pending: dict[int, Future[list[np.ndarray]]] = {}
        self._ids = itertools.count(1)
        self._ever_connected = False

    def _connect(self, patience_s: float | None = None) -> Connection:
        if patience_s is None:
            patience_s = _RECONNECT_PATIENCE_S if self._ever_connected else _FIRST_CONNECT_PATIENCE_S
        deadline = time.monotonic() + patience_s
        while True:
            try:
                connection = Client(self._address, family="AF_UNIX", authkey=self._authkey)
                break
            except (OSError, EOFError, AuthenticationError) as exc:  # not listening yet, or gone mid-handshake
                if time.monotonic() >= deadline:
                    raise InferenceUnavailable(
                        f"the inference process is not answering ({exc}); retry shortly", retry_after_s=_RETRY_AFTER_S
                    ) from None
                time.sleep(0.1)
        self._ever_connected = True
        threading.Thread(target=self._read, args=(connection,), name="device-answers", daemon=True).start()
        return connection

    def unreachable(self) -> str | None:
        """None while the inference process holds a connection or accepts one now; else why not.
        For readiness: a worker whose forward passes cannot run has nothing to serve. A probe
        never waits: not on a batch's connect (that is an answer: not connected yet), nor on
        the process (one try; the connection it opens is the one the next batch uses)."""
        if self._connection is not None:  # a read without the lock: a probe may be a moment late
            return None
        if not self._lock.acquire(blocking=False):
            return "connecting to the inference process"
        try:
            if self._connection is None:
                self._connection = self._connect(patience_s=0.0)
        except Exception as exc:  # InferenceUnavailable, or anything else: a 503, never a 500
            return short_error(exc)
        finally:
            self._lock.release()
        return None

    def _send(self, message: Message, arrays: tuple[np.ndarray, ...] = ()) -> Future[list[np.ndarray]] | None:
        data = encode(message, arrays)
        with self._lock:
            if self._connection is None:
                self._connection = self._connect()
            future: Future[list[np.ndarray]] | None = None
            if message.op == "forward":
                future = self._pending[message.id] = Future()
            try:
                self._connection.send_bytes(data)
            except OSError as exc:
                self._drop(self._connection, f"the link to the inference process broke ({exc})")
        return future

    def _drop(self, connection: Connection, why: str) -> None:
        """Called with the lock held: every batch in flight on `connection` fails with a 503."""
        if self._connection is not connection:
            return
        self._connection = None
        connection.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(InferenceUnavailable(f"{why}; retry shortly", retry_after_s=_RETRY_AFTER_S))
        self._pending.clear()

    def _read(self, connection: Connection) -> None:
        try:
            while True:
                message, arrays = decode(connection.recv_bytes())
                with self._lock:
                    future = self._pending.pop(message.id, None)
                if future is None or future.done():
                    continue  # its batch timed out meanwhile
                if message.op == "result":
                    future.set_result(arrays)
                else:
                    future.set_exception(DeviceLinkError(message.error))
        except (EOFError, OSError, WireError) as exc:
            with self._lock:
                self._drop(connection, f"the inference process went away ({type(exc).__name__})")

    def forward(self, name: str, version: int, arrays: WindowArrays) -> list[np.ndarray]:
        """[mean (B, H), spread (B,)] of one batch, run on the device."""
        message = Message(op="forward", id=next(self._ids), model=name, version=version, arrays=describe(arrays))
        future = self._send(message, arrays)
        assert future is not None  # a forward always waits for its answer
        try:
            return future.result(timeout=self._answer_timeout_s)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(message.id, None)
            raise InferenceUnavailable(
                f"the inference process did not answer within {self._answer_timeout_s:.0f}s; retry shortly",
                retry_after_s=_RETRY_AFTER_S,
            ) from None

    def release(self, name: str, version: int) -> None:
        """The version is unloaded here: the device may drop its copy once no worker holds it."""
        with self._lock:
            connected = self._connection is not None
        if connected:  # a process that never saw it (or restarted since) holds nothing to release
            self._send(Message(op="release", model=name, version=version))


@dataclass(slots=True)
class RemoteForward:
    """A loaded version's forward pass, run by the inference process."""

    client: DeviceClient
    name: str
    version: int

    def __call__(self, windows: Sequence[Window]) -> list[WindowForecast]:
        mean, spread = self.client.forward(self.name, self.version, stack_windows(windows))
        return Prediction(mean=mean, spread=spread).split()

    def release(self) -> None:
        try:
            self.client.release(self.name, self.version)
        except Exception as exc:  # unloading goes on: a process that lost us released it already
            logger.warning(
                "could not tell the inference process %s version %d is unloaded: %s", self.name, self.version, exc
            )


def device_forward(client: DeviceClient) -> ForwardFactory:
    """The forward factory of a worker whose forward passes run in the inference process: the
    worker verifies each version (`forecast.registry.weights.verified_weights`) and builds no
    network of its own; the inference process loads it."""

    def factory(manifest: Manifest, build: BuildNetwork) -> Forward:
        return RemoteForward(client, manifest.name, manifest.version)

    return factory
