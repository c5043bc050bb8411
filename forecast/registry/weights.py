"""Weights in and out of safetensors (no pickle), and a version rebuilt as a `Predictor`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from forecast.errors import RegistryCorrupt
from forecast.model.config import NetworkConfig
from forecast.model.network import Network, build_network
from forecast.model.predictor import Predictor
from forecast.registry.manifest import WEIGHTS_FILE, Manifest
from forecast.registry.store import Registry


def weights_bytes(network: Network) -> bytes:
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in network.state_dict().items()}
    return save_safetensors(state)


def network_from_weights(config: NetworkConfig, input_channels: int, payload: bytes) -> Network:
    network = build_network(config, input_channels)
    try:
        state = load_safetensors(payload)
        network.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError, SafetensorError) as exc:
        # torch puts a bare header on the first line and the tensor that does not fit on the next.
        detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])
        raise RegistryCorrupt(f"weights do not fit the manifest's network ({detail})") from exc
    return network


@dataclass(slots=True)
class LoadedVersion:
    manifest: Manifest
    predictor: Predictor


def load_predictor(registry: Registry, name: str, version: int, device: torch.device) -> LoadedVersion:
    """Rebuild a version from the registry, its weights checked against the manifest's sha256."""
    manifest = registry.manifest(name, version)
    payload = registry.read_file(name, version, WEIGHTS_FILE, manifest)
    network = network_from_weights(manifest.network, manifest.input_channels, payload)
    return LoadedVersion(manifest=manifest, predictor=Predictor(network, manifest.scaling, device))
