"""Small registries written in process: a GRU of a few weights per version, published through
the registry's own `publish`, for tests that need a servable model in milliseconds."""

from __future__ import annotations

import numpy as np
import torch

from forecast.model.intervals import calibrate
from forecast.model.network import Forecaster
from forecast.registry.manifest import REPORT_FILE, WEIGHTS_FILE
from forecast.registry.store import PRODUCTION, Registry
from forecast.registry.weights import weights_bytes
from tests.registry_writer import SMALL_CHANNELS, SMALL_NETWORK, make_manifest


def publish_network(registry: Registry, name: str, report: bytes = b"{}") -> int:
    """A small GRU (hourly, input 8, horizon 4) with random weights and a real calibration (the
    engine serves intervals), and `report` as its report.json; returns its version."""
    torch.manual_seed(registry.versions(name)[-1] if registry.versions(name) else 0)
    network = Forecaster(SMALL_NETWORK, SMALL_CHANNELS)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    scores = np.abs(np.random.default_rng(0).normal(size=(50, SMALL_NETWORK.horizon)))  # (W, H)
    draft = make_manifest(name, 0, {}).model_copy(update={"intervals": calibrate(scores)})
    files = {WEIGHTS_FILE: weights_bytes(network), REPORT_FILE: report}
    return registry.publish(name, files, draft).version


def move_alias(registry: Registry, name: str, version: int, alias: str = PRODUCTION) -> None:
    with registry.locked(name):
        registry.set_alias(name, alias, version)
