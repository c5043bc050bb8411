"""Data-parallel training on torchrun: which rank this process is, the process group, and the few
collectives the training loop needs beside DDP's gradient averaging.

torchrun starts one process per worker and sets RANK, WORLD_SIZE and LOCAL_RANK for each (and
MASTER_ADDR, MASTER_PORT, which torch's env:// rendezvous reads itself; on several nodes they come
from torchrun's rendezvous). Without them, or with WORLD_SIZE 1, the world is this one process:
nothing here talks to anyone and training runs exactly as it does without torchrun.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from forecast.errors import InvalidInput, PeerFailed

logger = logging.getLogger(__name__)


class LaunchEnvironment(BaseSettings):
    """The variables torchrun sets in each worker. They belong to the launcher, not to the service,
    so they live here rather than among the FORECAST_ settings."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=True)

    rank: int = Field(default=0, ge=0, validation_alias="RANK")
    world_size: int = Field(default=1, ge=1, validation_alias="WORLD_SIZE")
    local_rank: int = Field(default=0, ge=0, validation_alias="LOCAL_RANK")

    @model_validator(mode="after")
    def _rank_inside_world(self) -> LaunchEnvironment:
        if self.rank >= self.world_size:
            raise ValueError(f"RANK {self.rank} is not below WORLD_SIZE {self.world_size}")
        return self


@dataclass(frozen=True, slots=True)
class World:
    """This process's place among the training processes; `World()` is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that evaluates, publishes and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def share(self, items: np.ndarray) -> np.ndarray:
        """This rank's part of `items`: every `size`-th one from position `rank` on. The parts of the
        ranks are disjoint, cover `items`, and differ in length by at most one."""
        return items[self.rank :: self.size]

    def sum(self, *values: float) -> tuple[float, ...]:
        """Each value summed over the ranks (float64, so counts stay exact); every rank gets the sums."""
        if not self.distributed:
            return values
        totals = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(totals)
        return tuple(totals.tolist())

    def from_main(self, value: float) -> float:
        """Rank 0's value on every rank: decisions taken from it (the learning-rate schedule, the
        best epoch, the early stop) are then the same everywhere, whatever the last bit of a sum."""
        if not self.distributed:
            return value
        carried = torch.tensor([value], dtype=torch.float64)
        dist.broadcast(carried, src=0)
        return float(carried.item())

    def wrap(self, network: nn.Module, device: torch.device) -> nn.Module:
        """The module to run training forwards through: DDP's wrapper, which averages the gradients
        over the ranks during backward, or the network itself in one process."""
        if not self.distributed:
            return network
        device_ids = (
            [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else None
        )
        # No buffer changes during training (the anchor's index is fixed), so none is broadcast per step.
        return DistributedDataParallel(network, device_ids=device_ids, forward_sync_buffers=False)

    def step(self) -> _SharedStep:
        """A block every rank runs on the same input (reading the settings and the data): when it
        fails on any rank, every rank stops at its end, and only the lowest failing rank raises its
        error; the others raise `PeerFailed`, so the user reads the reason once."""
        return _SharedStep(self)

    def leave(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


class _SharedStep:
    def __init__(self, world: World) -> None:
        self.world = world

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> Literal[False]:  # never swallows: an error propagates, or PeerFailed replaces it
        if not self.world.distributed or (error is not None and not isinstance(error, Exception)):
            return False  # one process, or an interrupt: nothing to agree on
        failed = torch.zeros(self.world.size, dtype=torch.int64)
        failed[self.world.rank] = int(error is not None)
        dist.all_reduce(failed)  # (W,) which ranks failed
        failing = failed.nonzero().flatten().tolist()
        if not failing:
            return False
        first = failing[0]
        if error is not None and self.world.rank == first:
            return False  # this rank reports: its own error propagates
        raise PeerFailed(f"rank {first} of {self.world.size} failed and reported why") from error


def join_world() -> World:
    """This process's world from torchrun's variables; with more than one process, the process
    group too: gloo for tensors on the CPU, and nccl for those on GPUs when torch sees any."""
    try:
        launch = LaunchEnvironment()
    except ValidationError as exc:
        raise InvalidInput(f"torchrun's environment is inconsistent: {exc.errors()[0]['msg']}") from exc
    world = World(rank=launch.rank, size=launch.world_size, local_rank=launch.local_rank)
    if world.distributed and not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            # One GPU per local rank; `--device cuda` checks there are enough (`check_world`).
            torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend)
        logger.info("rank %d of %d joined the process group (%s)", world.rank, world.size, backend)
    return world


def check_world(world: World, device: torch.device, train_windows: int) -> None:
    """What data-parallel training needs beyond one process: a GPU of its own for each local rank
    on CUDA, and at least one training window for each rank."""
    if not world.distributed:
        return
    if device.type == "cuda" and world.local_rank >= torch.cuda.device_count():
        raise InvalidInput(
            f"local rank {world.local_rank} has no GPU of its own (torch sees {torch.cuda.device_count()}); "
            "start at most that many processes per node, or train with --device cpu"
        )
    if train_windows < world.size:
        raise InvalidInput(
            f"{train_windows} training windows cannot be shared by {world.size} processes; "
            "start fewer processes or give more history"
        )


SOLO = World()
