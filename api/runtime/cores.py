"""How many cores this process may use, and how the serving workers share them out."""

from __future__ import annotations

import joblib


def usable_cores() -> int:
    """The cores this process may use: joblib (loky) counts the affinity mask and the
    container's CPU quota (cgroup v1 and v2), so a pod limited to 2 CPUs on a 64-core node
    gets 2, not 64."""
    return max(1, int(joblib.cpu_count()))


def worker_count(setting: int) -> int:
    """FORECAST_WORKERS, 0 meaning one per usable core."""
    return setting or usable_cores()


def threads_per_worker(torch_threads: int, workers: int) -> int:
    """torch's intra-op threads in each worker: the cores shared out, so that N workers do not
    each start one thread per core (N x cores threads fighting for the cores)."""
    return torch_threads or max(1, usable_cores() // workers)
