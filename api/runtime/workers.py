"""Several serving processes on one port: the parent binds the socket once and supervises N
workers, each a whole server (its own engine, batchers, hot reload, leases and transport
limits) accepting connections from the shared socket, as gunicorn and uvicorn's `--workers` do.

Why a supervisor of our own rather than uvicorn's: every worker must run DrainingServer and the
transport protocol, exited workers' gauges must be dropped from the merged metrics
(`mark_process_dead`), and the metrics folder must live exactly as long as the parent.

- Metrics: prometheus-client's multiprocess mode. The parent creates a private folder and names
  it in PROMETHEUS_MULTIPROC_DIR before the workers start (prometheus-client reads it at import);
  each worker writes its samples there, and /metrics in any worker merges all of them.
- Shutdown: SIGTERM or SIGINT to the parent is forwarded to every worker, each fails readiness,
  drains and exits; the parent exits 0 once all exited 0, and removes the folder.
- A worker that dies is replaced (after a pause if it died young, so a crash at start-up loops
  slowly instead of spinning); one that cannot start (uvicorn's exit code 3) stops them all.
- A worker whose parent died (SIGKILL) shuts itself down gracefully instead of lingering.
- With FORECAST_INFERENCE=per_device the supervisor also runs one inference process per device
  (forecast/serving/device_process.py): started first, replaced like a worker when it dies,
  and stopped (SIGTERM) only once every worker has drained and exited.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from types import FrameType

from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE

logger = logging.getLogger(__name__)

# A worker runs this with the shared listening socket and its slot (0 to N-1, which its
# replacement keeps); it returns when the server has stopped.
WorkerTarget = Callable[[socket.socket, int], None]
# A shared inference process (one per device) runs this until it is stopped.
DeviceTarget = Callable[[], None]
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name for it
# A child that dies younger than this is replaced only after the pause.
_YOUNG_S = 5.0
_RESTART_PAUSE_S = 2.0


def bind_socket(host: str, port: int) -> socket.socket:
    """The one listening socket every worker accepts from (workers call listen with the backlog)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _child_main(run: Callable[[], None]) -> None:
    """A worker or inference process: a graceful shutdown if the parent goes away without saying so."""
    parent = multiprocessing.parent_process()
    if parent is not None:

        def shut_down_when_orphaned() -> None:
            wait([parent.sentinel])
            logger.warning("the supervisor is gone: shutting down")
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=shut_down_when_orphaned, name="parent-watch", daemon=True).start()
    run()


@dataclass(slots=True)
class _Child:
    process: SpawnProcess
    kind: str  # "worker" or "inference process"
    slot: int  # a worker's slot, an inference process's device index
    started_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Supervisor:
    target: WorkerTarget
    sock: socket.socket
    count: int
    # How long the workers get to drain after the stop signal before they are killed.
    stop_timeout_s: float
    # The inference processes the workers send their forward passes to (FORECAST_INFERENCE=
    # per_device): started before the workers, replaced when they die, stopped after the last
    # worker exited (the workers' drains still need them).
    devices: list[DeviceTarget] = field(default_factory=list)
    children: dict[int, _Child] = field(default_factory=dict)  # sentinel -> child
    restarts_due: list[tuple[float, str, int]] = field(default_factory=list)  # (time.monotonic(), kind, slot)
    exit_codes: list[int] = field(default_factory=list)
    stopping_since: float | None = None
    devices_stopped: bool = False
    killed: bool = False  # the drain overran and the rest were killed
    failed_start: bool = False

    def _spawn(self, kind: str, slot: int) -> None:
        run = partial(self.target, self.sock, slot) if kind == "worker" else self.devices[slot]
        name = "forecast-worker" if kind == "worker" else "forecast-inference"
        process = multiprocessing.get_context("spawn").Process(target=_child_main, args=(run,), name=name)
        process.start()
        assert process.pid is not None  # started
        self.children[process.sentinel] = _Child(process, kind, slot)
        logger.info("started %s %d", kind, process.pid)

    def _live(self, kind: str) -> list[SpawnProcess]:
        return [c.process for c in self.children.values() if c.kind == kind and c.process.exitcode is None]

    def _signal(self, processes: list[SpawnProcess], sig: int) -> None:
        for process in processes:
            if process.pid is not None:
                os.kill(process.pid, sig)

    def _reap(self, sentinel: int, metrics_dir: str) -> None:
        child = self.children.pop(sentinel)
        process = child.process
        process.join()
        assert process.pid is not None and process.exitcode is not None  # joined
        multiprocess.mark_process_dead(process.pid, metrics_dir)  # its live gauges leave the view
        if self.stopping_since is not None:
            logger.info("%s %d exited with %d", child.kind, process.pid, process.exitcode)
            # Killed by the forwarded signal itself: a worker still importing, before uvicorn's
            # handlers (installed before the socket is served), so it had accepted nothing; or
            # an inference process, stopped so once no worker needs it.
            by_signal = process.exitcode in (-signal.SIGTERM, -signal.SIGINT) and not self.killed
            self.exit_codes.append(0 if by_signal else process.exitcode)
        elif child.kind == "worker" and process.exitcode == STARTUP_FAILURE:
            logger.error("worker %d could not start: stopping every worker", process.pid)
            self.failed_start = True
            self.exit_codes.append(process.exitcode)
            self.stop(signal.SIGTERM)
        else:
            young = time.monotonic() - child.started_at < _YOUNG_S
            pause_s = _RESTART_PAUSE_S if young else 0.0
            logger.error(
                "%s %d died (exit code %d): another in %.0fs", child.kind, process.pid, process.exitcode, pause_s
            )
            self.restarts_due.append((time.monotonic() + pause_s, child.kind, child.slot))

    def _timeout(self) -> float | None:
        """Until the drain's deadline or the next pending start, whichever comes first."""
        due = [] if self.stopping_since is not None else [at for at, _, _ in self.restarts_due]
        if self.stopping_since is not None and not self.killed:
            due.append(self.stopping_since + self.stop_timeout_s)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def stop(self, sig: int) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        self._signal(self._live("worker"), sig)

    def _step(self, now: float) -> None:
        """Start what is due, stop the inference processes once the workers are gone, kill what
        overran the drain."""
        if self.stopping_since is None:
            for due in [due for due in self.restarts_due if due[0] <= now]:
                self.restarts_due.remove(due)
                self._spawn(due[1], due[2])
            return
        if not self.devices_stopped and not self._live("worker"):
            self.devices_stopped = True
            self._signal(self._live("inference process"), signal.SIGTERM)
        if not self.killed and now >= self.stopping_since + self.stop_timeout_s:
            logger.error("still running %.0fs after the stop signal: killing what is left", self.stop_timeout_s)
            self.killed = True
            self._signal(self._live("worker") + self._live("inference process"), signal.SIGKILL)
            self.exit_codes.append(1)

    def run(self, metrics_dir: str) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        received: list[int] = []

        def on_signal(sig: int, frame: FrameType | None) -> None:
            received.append(sig)
            os.write(wake_write, b"\0")  # wakes the wait below: no polling

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(len(self.devices)):
                self._spawn("inference process", index)
            for slot in range(self.count):
                self._spawn("worker", slot)
            while self.children or (self.restarts_due and self.stopping_since is None):
                ready = wait([*self.children, wake_read], self._timeout())
                for handle in ready:
                    if handle == wake_read:
                        os.read(wake_read, 64)
                        while received:
                            sig = received.pop(0)
                            logger.warning(
                                "%s: stopping %d workers", signal.Signals(sig).name, len(self._live("worker"))
                            )
                            self.stop(sig)  # a second signal reaches the workers too: they skip the grace
                    else:
                        self._reap(int(handle), metrics_dir)  # type: ignore[arg-type]
                self._step(time.monotonic())
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)
        return 1 if self.failed_start or any(self.exit_codes) else 0


def run_workers(
    target: WorkerTarget,
    sock: socket.socket,
    count: int,
    stop_timeout_s: float,
    devices: list[DeviceTarget] | None = None,
) -> int:
    """Run `count` workers on `sock` (and the inference processes `devices`) until a signal
    stops them; 0 when all drained and exited 0."""
    metrics_dir = tempfile.mkdtemp(prefix="forecast-metrics-")
    os.environ[METRICS_DIR_VARIABLE] = metrics_dir  # the children inherit it; the parent records nothing
    logger.info("%d workers; their metrics are merged from %s", count, metrics_dir)
    try:
        return Supervisor(target, sock, count, stop_timeout_s, devices or []).run(metrics_dir)
    finally:
        sock.close()
        os.environ.pop(METRICS_DIR_VARIABLE, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
