"""FORECAST_INFERENCE: where the forward passes of several workers run.

`per_worker`: each worker loads every version on the device and runs its own batches. On the
CPU this is best (measured with bench/serve.py --workers: a forward costs in proportion to its
batch, so N queues lose nothing and N processes use N cores).

`per_device`: one inference process per device (forecast/serving/device_process.py) runs the
forward passes of every worker, merging their batches; the workers keep a CPU copy of each
version only to verify and describe it. On a GPU a forward costs about the same at 256 series
as at 8 and N CUDA contexts are time-sliced, so one process per device keeps the batches large.

`auto` is per_device on CUDA, per_worker on the CPU.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from api.runtime.workers import DeviceTarget
from forecast.model.devices import resolve_device
from forecast.serving.device_process import run_device_process
from forecast.settings import Settings, max_batch_size


@dataclass(frozen=True, slots=True)
class DeviceLink:
    """How a worker reaches the inference processes (pickled into each worker)."""

    addresses: tuple[str, ...]  # Unix sockets in a private folder, one per device
    authkey: bytes  # both sides prove they know it before a message is read

    def address_for(self, slot: int) -> str:
        """Workers spread over the devices by slot, so each device gets its share."""
        return self.addresses[slot % len(self.addresses)]


def inference_devices(settings: Settings) -> list[str]:
    """The devices that get an inference process; none when each worker runs its own passes."""
    device = resolve_device(settings.device)
    if settings.inference == "per_worker" or (settings.inference == "auto" and device.type != "cuda"):
        return []
    if device.type == "cuda":
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    return ["cpu"]


@dataclass(frozen=True, slots=True)
class InferencePlan:
    link: DeviceLink
    devices: list[DeviceTarget]
    worker_settings: Settings  # the workers' own: their copies on the CPU, the device's batch size
    folder: Path  # holds the sockets; the caller removes it once the processes are gone


def plan_inference(settings: Settings, devices: list[str]) -> InferencePlan:
    folder = Path(tempfile.mkdtemp(prefix="forecast-inference-"))  # 0700: only this user connects
    authkey = os.urandom(32)
    addresses = tuple(str(folder / f"device-{index}.sock") for index in range(len(devices)))
    targets: list[DeviceTarget] = [
        partial(run_device_process, settings, address, authkey, device)
        for address, device in zip(addresses, devices, strict=True)
    ]
    device_type = torch.device(devices[0]).type
    worker_settings = Settings(
        **{
            **settings.model_dump(),
            "device": "cpu",  # no CUDA context per worker: they run no forward pass
            "max_batch_size": max_batch_size(settings, device_type),
            "torch_threads": 1,
        }
    )
    return InferencePlan(DeviceLink(addresses, authkey), targets, worker_settings, folder)
