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
"""

from __future__ import annotations

import logging
import math
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
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType

from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE

logger = logging.getLogger(__name__)

# A worker runs this with the shared listening socket; it returns when the server has stopped.
WorkerTarget = Callable[[socket.socket], None]
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own name for it
_CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
# A worker that dies younger than this is replaced only after the pause.
_YOUNG_S = 5.0
_RESTART_PAUSE_S = 2.0


def cgroup_cpu_quota(cpu_max: Path = _CGROUP_V2_CPU_MAX) -> float | None:
    """The container's CPU limit in cores, None without one. A pod limited to 2 CPUs on a
    64-core node sees 64 cores through the affinity mask; the quota is what it may use."""
    try:
        quota, period = cpu_max.read_text().split()[:2]  # cgroup v2: "200000 100000" or "max 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(_CGROUP_V1_QUOTA.read_text())
        return None if quota_us <= 0 else quota_us / int(_CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def worker_count(setting: int) -> int:
    """FORECAST_WORKERS, 0 meaning one per usable core."""
    return setting or usable_cores()


def threads_per_worker(torch_threads: int, workers: int) -> int:
    """torch's intra-op threads in each worker: the cores shared out, so that N workers do not
    each start one thread per core (N x cores threads fighting for the cores)."""
    return torch_threads or max(1, usable_cores() // workers)


def bind_socket(host: str, port: int) -> socket.socket:
    """The one listening socket every worker accepts from (workers call listen with the backlog)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _worker_main(target: WorkerTarget, sock: socket.socket) -> None:
    """A worker process: a graceful shutdown if the parent goes away without saying so."""
    parent = multiprocessing.parent_process()
    if parent is not None:

        def shut_down_when_orphaned() -> None:
            wait([parent.sentinel])
            logger.warning("the supervisor is gone: shutting down")
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=shut_down_when_orphaned, name="parent-watch", daemon=True).start()
    target(sock)


@dataclass(slots=True)
class Supervisor:
    target: WorkerTarget
    sock: socket.socket
    count: int
    # How long the workers get to drain after the stop signal before they are killed.
    stop_timeout_s: float
    workers: dict[int, SpawnProcess] = field(default_factory=dict)  # sentinel -> process
    started_at: dict[int, float] = field(default_factory=dict)  # pid -> time.monotonic()
    restarts_due: list[float] = field(default_factory=list)  # time.monotonic() of each pending start
    exit_codes: list[int] = field(default_factory=list)
    stopping_since: float | None = None
    killed: bool = False  # the drain overran and the rest were killed
    failed_start: bool = False

    def _spawn(self) -> None:
        process = multiprocessing.get_context("spawn").Process(
            target=_worker_main, args=(self.target, self.sock), name="forecast-worker"
        )
        process.start()
        assert process.pid is not None  # started
        self.workers[process.sentinel] = process
        self.started_at[process.pid] = time.monotonic()
        logger.info("started worker %d", process.pid)

    def _signal_workers(self, sig: int) -> None:
        for process in self.workers.values():
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, sig)

    def _reap(self, sentinel: int, metrics_dir: str) -> None:
        process = self.workers.pop(sentinel)
        process.join()
        assert process.pid is not None and process.exitcode is not None  # joined
        multiprocess.mark_process_dead(process.pid, metrics_dir)  # its live gauges leave the view
        if self.stopping_since is not None:
            logger.info("worker %d exited with %d", process.pid, process.exitcode)
            # Killed by the forwarded signal itself: it was still importing, before uvicorn's
            # handlers (installed before the socket is served), so it had accepted nothing.
            stopped_early = process.exitcode in (-signal.SIGTERM, -signal.SIGINT) and not self.killed
            self.exit_codes.append(0 if stopped_early else process.exitcode)
        elif process.exitcode == STARTUP_FAILURE:
            logger.error("worker %d could not start: stopping every worker", process.pid)
            self.failed_start = True
            self.exit_codes.append(process.exitcode)
            self.stop(signal.SIGTERM)
        else:
            young = time.monotonic() - self.started_at[process.pid] < _YOUNG_S
            pause_s = _RESTART_PAUSE_S if young else 0.0
            logger.error("worker %d died (exit code %d): another in %.0fs", process.pid, process.exitcode, pause_s)
            self.restarts_due.append(time.monotonic() + pause_s)
        del self.started_at[process.pid]

    def _timeout(self) -> float | None:
        """Until the drain's deadline or the next pending start, whichever comes first."""
        due = [] if self.stopping_since is not None else list(self.restarts_due)
        if self.stopping_since is not None and not self.killed:
            due.append(self.stopping_since + self.stop_timeout_s)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def stop(self, sig: int) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        self._signal_workers(sig)

    def run(self, metrics_dir: str) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        received: list[int] = []

        def on_signal(sig: int, frame: FrameType | None) -> None:
            received.append(sig)
            os.write(wake_write, b"\0")  # wakes the wait below: no polling

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for _ in range(self.count):
                self._spawn()
            while self.workers or (self.restarts_due and self.stopping_since is None):
                ready = wait([*self.workers, wake_read], self._timeout())
                now = time.monotonic()
                if self.stopping_since is None:
                    for due in [due for due in self.restarts_due if due <= now]:
                        self.restarts_due.remove(due)
                        self._spawn()
                elif not self.killed and now >= self.stopping_since + self.stop_timeout_s:
                    logger.error("workers still running %.0fs after the stop signal: killing them", self.stop_timeout_s)
                    self.killed = True
                    self._signal_workers(signal.SIGKILL)
                    self.exit_codes.append(1)
                for handle in ready:
                    if handle == wake_read:
                        os.read(wake_read, 64)
                        while received:
                            sig = received.pop(0)
                            logger.warning("%s: stopping %d workers", signal.Signals(sig).name, len(self.workers))
                            self.stop(sig)  # a second signal reaches the workers too: they skip the grace
                    else:
                        self._reap(int(handle), metrics_dir)  # type: ignore[arg-type]
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)
        return 1 if self.failed_start or any(self.exit_codes) else 0


def run_workers(target: WorkerTarget, sock: socket.socket, count: int, stop_timeout_s: float) -> int:
    """Run `count` workers on `sock` until a signal stops them; 0 when all drained and exited 0."""
    metrics_dir = tempfile.mkdtemp(prefix="forecast-metrics-")
    os.environ[METRICS_DIR_VARIABLE] = metrics_dir  # the workers inherit it; the parent records nothing
    logger.info("%d workers; their metrics are merged from %s", count, metrics_dir)
    try:
        return Supervisor(target, sock, count, stop_timeout_s).run(metrics_dir)
    finally:
        sock.close()
        os.environ.pop(METRICS_DIR_VARIABLE, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
