"""A trained network with its preprocessing: raw windows in, forecasts on the original scale out.

The training job's evaluation and the API's engine both forecast through `Predictor`, and a
Predictor is rebuilt from the registry exactly as it was trained (manifest + safetensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from forecast.errors import RegistryCorrupt
from forecast.manifest import WEIGHTS_FILE, Manifest
from forecast.network_config import NetworkConfig
from forecast.networks import Forecaster
from forecast.preprocess import decode, encode
from forecast.registry import Registry
from forecast.scaling_params import ScalingParams


@dataclass(slots=True)
class Prediction:
    mean: np.ndarray  # (B, H) on the original scale
    spread: np.ndarray  # (B,) each window's scale, which the conformal intervals multiply


class Predictor:
    def __init__(self, network: Forecaster, scaling: ScalingParams, device: torch.device) -> None:
        self.network = network.to(device).eval()
        self.scaling = scaling
        self.device = device

    @property
    def config(self) -> NetworkConfig:
        return self.network.config

    def predict(self, history: torch.Tensor, features: torch.Tensor, batch_size: int = 4096) -> Prediction:
        """history (B, L), features (B, L, F), both on any device -> Prediction."""
        if self.device.type == "cuda" and not history.is_cuda:  # pinned memory: asynchronous copies
            history, features = history.pin_memory(), features.pin_memory()
        means, spreads = [], []
        with torch.inference_mode():
            for start in range(0, history.shape[0], batch_size):
                chunk = slice(start, start + batch_size)
                means_chunk, spread_chunk = self.forward_raw(history[chunk], features[chunk])
                means.append(means_chunk.cpu())
                spreads.append(spread_chunk.cpu())
        mean = torch.cat(means).double().numpy() if means else np.zeros((0, self.config.horizon))
        spread = torch.cat(spreads).double().numpy()[:, 0] if spreads else np.zeros(0)
        return Prediction(mean=mean, spread=spread)

    def forward_raw(self, history: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass on the predictor's device; the caller picks the grad mode."""
        encoded = encode(
            history.to(self.device, non_blocking=True), features.to(self.device, non_blocking=True), self.scaling
        )
        return decode(self.network(encoded.inputs), encoded), encoded.spread


def weights_bytes(network: Forecaster) -> bytes:
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in network.state_dict().items()}
    return save_safetensors(state)


def network_from_weights(config: NetworkConfig, payload: bytes) -> Forecaster:
    network = Forecaster(config)
    try:
        state = load_safetensors(payload)
        network.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError, SafetensorError) as exc:
        # torch puts a bare header on the first line and the tensor that does not fit on the next.
        detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])
        raise RegistryCorrupt(f"weights do not fit the manifest's network ({detail})") from exc
    return network


def load_predictor(registry: Registry, name: str, version: int, device: torch.device) -> tuple[Manifest, Predictor]:
    """Rebuild a version from the registry, its weights checked against the manifest's sha256."""
    manifest = registry.manifest(name, version)
    payload = registry.read_file(name, version, WEIGHTS_FILE, manifest)
    network = network_from_weights(manifest.network, payload)
    return manifest, Predictor(network, manifest.scaling, device)
