"""`forecast train --nproc N`: the same command on N processes of this machine, started by
torchrun's own elastic agent as `torchrun --standalone --nproc-per-node N -m forecast.cli train ...`
would, without the user spelling that line. Several machines still use torchrun itself (its
rendezvous joins them); this covers the one-machine case and reports a failure in one line.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from forecast.errors import TrainingFailed

# What `forecast` exits with after printing its own one-line error (forecast.cli.main).
REPORTED_ERROR_EXIT = 2
# Logs each failed worker at ERROR; launch_local reports a failure itself, once.
_WORKER_FAILURE_LOGGER = "torch.distributed.elastic.multiprocessing.api"


def launch_local(nproc: int, argv: list[str]) -> int:
    """Run `python -m forecast.cli ARGV` on `nproc` local processes and wait for them: 0 when all
    succeeded, 2 when one printed its one-line error; TrainingFailed when one crashed or was killed."""
    if "OMP_NUM_THREADS" not in os.environ:
        # N processes with a thread per core each would oversubscribe the cores N times over.
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone picks
        max_restarts=0,  # the same data and seed would fail the same way again
    )
    failures = logging.getLogger(_WORKER_FAILURE_LOGGER)
    level = failures.level
    failures.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "forecast.cli", *argv)
    except ChildFailedError as failure:
        rank, first = failure.get_first_failure()
        if first.exitcode == REPORTED_ERROR_EXIT:
            return REPORTED_ERROR_EXIT
        ending = "; a negative code is the signal that ended it (-9: often the out-of-memory killer)"
        raise TrainingFailed(
            f"training process of rank {rank} exited with code {first.exitcode}"
            + (ending if first.exitcode < 0 else "")
        ) from failure
    finally:
        failures.setLevel(level)
    return 0
