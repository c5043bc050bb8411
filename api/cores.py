"""How many cores this process may use, and how the serving workers share them out."""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


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
