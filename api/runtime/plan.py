"""The serving plan: which process runs what, decided once from the settings.

`forecast serve` plans, then supervises (api/runtime/server.py). The plan holds the worker
count, each worker's settings (derived here, in one place), the inference processes' targets,
and each worker's forward factory, with a stand-in (the serving benchmark's no-op, a test's
failing network) as an explicit field rather than recognised by identity.

FORECAST_INFERENCE says where the forward passes of several workers run:

`per_worker`: each worker loads every version on the device and runs its own batches. On the
CPU this is best (measured with bench/serve.py --workers: a forward costs in proportion to its
batch, so N queues lose nothing and N processes use N cores).

`per_device`: one inference process per device (forecast/serving/device_process.py) runs the
forward passes of every worker, merging their batches; the workers keep a CPU copy of each
version only to verify and describe it. On a GPU a forward costs about the same at 256 series
as at 8 and N CUDA contexts are time-sliced, so one process per device keeps the batches large.

`auto` is per_device on CUDA, per_worker on the CPU. A stand-in forward always runs in the
workers: there is no network to share.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from api.runtime.cores import threads_per_worker, worker_count
from api.runtime.workers import DeviceTarget
from forecast.model.devices import resolve_device
from forecast.serving.device_process import run_device_process
from forecast.serving.pipeline import ForwardFactory, network_forward
from forecast.settings import Settings, max_batch_size


@dataclass(frozen=True, slots=True)
class DeviceLink:
    """How a worker reaches the inference processes (pickled into each worker)."""

    addresses: tuple[str, ...]  # Unix sockets in a private folder, one per device
    authkey: bytes  # both sides prove they know it before a message is read

    def address_for(self, slot: int) -> str:
        """Workers spread over the devices by slot, so each device gets its share."""
        return self.addresses[slot % len(self.addresses)]


@dataclass(frozen=True, slots=True)
class ServingPlan:
    workers: int
    worker_settings: Settings  # what every worker runs with (pickled into each)
    # A stand-in for the network's forward pass (the benchmark's no-op), or None: the network's.
    stand_in: ForwardFactory | None = None
    link: DeviceLink | None = None  # set when the passes run in inference processes
    devices: list[DeviceTarget] = field(default_factory=list)  # one inference process each
    folder: Path | None = None  # holds the inference sockets; removed by `release`

    @property
    def forward_factory(self) -> ForwardFactory:
        """The forward factory of a worker that runs its own passes."""
        return self.stand_in or network_forward

    def release(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def inference_devices(settings: Settings) -> list[str]:
    """The devices that get an inference process; none when each worker runs its own passes."""
    device = resolve_device(settings.device)
    if settings.inference == "per_worker" or (settings.inference == "auto" and device.type != "cuda"):
        return []
    if device.type == "cuda":
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return ["cpu"]


def _with(settings: Settings, **changes: object) -> Settings:
    return Settings(**{**settings.model_dump(), **changes}) if changes else settings


def plan_serving(
    settings: Settings,
    *,
    workers: int | None = None,
    registry: str | None = None,
    stand_in: ForwardFactory | None = None,
) -> ServingPlan:
    """`workers` (default FORECAST_WORKERS; 0: one per usable core) serving processes."""
    count = worker_count(settings.workers if workers is None else workers)
    changes: dict[str, object] = {} if registry is None else {"registry": registry}
    if workers is not None or count > 1:
        changes["workers"] = count  # each worker knows how many share the port (its share of the rate limits)
    devices = inference_devices(settings) if count > 1 and stand_in is None else []
    if not devices:
        if count > 1:  # N workers share the cores, not N x cores threads fighting for them
            changes["torch_threads"] = threads_per_worker(settings.torch_threads, count)
        return ServingPlan(count, _with(settings, **changes), stand_in)
    # With inference processes the workers run no forward pass: those keep every core's threads.
    device_settings = _with(settings, **changes)
    folder = Path(tempfile.mkdtemp(prefix="forecast-inference-"))  # 0700: only this user connects
    authkey = os.urandom(32)
    addresses = tuple(str(folder / f"device-{index}.sock") for index in range(len(devices)))
    targets: list[DeviceTarget] = [
        partial(run_device_process, device_settings, address, authkey, device)
        for address, device in zip(addresses, devices, strict=True)
    ]
    worker_settings = _with(
        device_settings,
        device="cpu",  # no CUDA context per worker: they run no forward pass
        max_batch_size=max_batch_size(device_settings, torch.device(devices[0]).type),
        torch_threads=1,
    )
    return ServingPlan(count, worker_settings, None, DeviceLink(addresses, authkey), targets, folder)
