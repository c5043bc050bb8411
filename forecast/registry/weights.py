"""Weights in and out of safetensors (no pickle), and a version rebuilt as a `Predictor`.

Before a version is rebuilt its manifest is checked against the weights it describes: the width
of its calendar features must be the input width the weights were trained on. A manifest that
lies about it cannot serve a single request; torch's strict load would refuse it too, naming a
tensor, so this says what is wrong in the manifest's own terms, with the folder named.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from forecast.errors import RegistryCorrupt
from forecast.model.config import InputLayout, NetworkConfig
from forecast.model.network import Network, build_network, input_width_of
from forecast.model.predictor import Predictor
from forecast.registry.manifest import WEIGHTS_FILE, Manifest
from forecast.registry.store import Registry

State = dict[str, torch.Tensor]


def weights_bytes(network: Network) -> bytes:
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in network.state_dict().items()}
    return save_safetensors(state)


def _first_lines(exc: BaseException) -> str:
    # torch puts a bare header on the first line and the tensor that does not fit on the next.
    return " ".join(line.strip() for line in str(exc).splitlines()[:2])


def read_state(payload: bytes) -> State:
    try:
        return load_safetensors(payload)
    except (RuntimeError, ValueError, KeyError, SafetensorError) as exc:
        raise RegistryCorrupt(
            f"weights do not fit the manifest's network: not a readable safetensors file ({_first_lines(exc)})"
        ) from exc


def check_manifest_fits(manifest: Manifest, state: State) -> None:
    """Refuse a manifest whose features' width is not the weights' input width (the manifest
    itself refuses features the server cannot compute)."""
    try:
        trained = input_width_of(state, manifest.network)
    except ValueError as exc:
        raise RegistryCorrupt(str(exc)) from None
    if trained is not None and trained != manifest.input_channels:
        raise RegistryCorrupt(
            f"the manifest's features {manifest.features} and covariates {manifest.covariates.names} make "
            f"{manifest.input_channels} input channels (the value, 2 per feature, the covariates, the mask) but its weights "
            f"read {trained}; the manifest does not describe these weights (restore it or retrain)"
        )


def network_from_weights(config: NetworkConfig, layout: InputLayout | int, payload: bytes | State) -> Network:
    network = build_network(config, layout)
    state = read_state(payload) if isinstance(payload, bytes) else payload
    try:
        network.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise RegistryCorrupt(f"weights do not fit the manifest's network ({_first_lines(exc)})") from exc
    return network


@dataclass(slots=True)
class RebuiltVersion:
    """A version rebuilt from its registry files (the serving engine holds these in
    forecast/serving/versions.py's LoadedVersions, each behind its batcher)."""

    manifest: Manifest
    predictor: Predictor


# A safetensors file is an 8-byte length, a JSON header (about 100 bytes per tensor) and the
# tensors' bytes. Its size is bounded by the network the manifest describes before any of it is
# read: a manifest claiming a wide network over a small file, or a huge file behind a small
# network, is refused without allocating either.
_HEADER_BYTES_PER_TENSOR = 512
_HEADER_SLACK_BYTES = 64 * 1024


def expected_weights_bytes(manifest: Manifest) -> tuple[int, int]:
    """(the tensors' bytes, the most the file may hold) for the manifest's network, built on the
    meta device: shapes without memory."""
    with torch.device("meta"):
        network = build_network(manifest.network, manifest.layout)
    state = network.state_dict()
    data = sum(tensor.numel() * tensor.element_size() for tensor in state.values())
    return data, data + 8 + _HEADER_SLACK_BYTES + _HEADER_BYTES_PER_TENSOR * len(state)


def _check_weights_size(registry: Registry, name: str, version: int, manifest: Manifest) -> int:
    """The most bytes the weights file may hold; RegistryCorrupt when its size cannot be the
    manifest's network's."""
    data, most = expected_weights_bytes(manifest)
    size = registry.file_size(name, version, WEIGHTS_FILE)
    if size is not None and not data < size <= most:
        raise RegistryCorrupt(
            f"{WEIGHTS_FILE} is {size:,} bytes, but the manifest's network holds {data:,} bytes of weights; "
            "the manifest does not describe these weights (restore the version or retrain)"
        )
    return most


def load_predictor(registry: Registry, name: str, version: int, device: torch.device) -> RebuiltVersion:
    """Rebuild a version from the registry: the manifest checked against its folder, the weights
    file's size against the manifest's network (before reading it), the weights against the
    manifest's sha256 and then against the network."""
    manifest = registry.manifest(name, version)
    try:
        most = _check_weights_size(registry, name, version, manifest)
    except RegistryCorrupt as exc:
        folder = registry.version_location(name, version)
        raise RegistryCorrupt(f"model {name!r} version {version} in {folder}: {exc}") from exc
    payload = registry.read_file(name, version, WEIGHTS_FILE, manifest, limit_bytes=most)
    try:
        state = read_state(payload)
        check_manifest_fits(manifest, state)
        network = network_from_weights(manifest.network, manifest.layout, state)
    except RegistryCorrupt as exc:
        folder = registry.version_location(name, version)
        raise RegistryCorrupt(f"model {name!r} version {version} in {folder}: {exc}") from exc
    return RebuiltVersion(
        manifest=manifest,
        predictor=Predictor(
            network, manifest.scaling, device, manifest.intervals.scale, manifest.covariates, manifest.season_length
        ),
    )
