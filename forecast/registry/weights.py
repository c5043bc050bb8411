"""Weights in and out of safetensors (no pickle), and a version rebuilt as a `Predictor`.

Before a version is rebuilt its manifest is checked against the weights it describes, in the
order that allocates least: the file's size against the network the manifest describes (built
on torch's meta device), its sha256, then its safetensors header (every tensor's name, shape and
byte range) against that network and the width of its calendar features and covariates against
the input width the weights read. Only then are the tensors read. A manifest or file that lies
is refused in the manifest's own terms, with the folder named, and costs no more memory than
the file's real size.
"""

from __future__ import annotations

import json
import math
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

# The dtypes a weights file may declare (the job writes float32), and their widths.
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
_DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}


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


def expected_state(manifest: Manifest) -> State:
    """The tensors of the manifest's network, built on the meta device: shapes without memory."""
    with torch.device("meta"):
        return build_network(manifest.network, manifest.layout).state_dict()


def _check_weights_size(registry: Registry, name: str, version: int, expected: State) -> int:
    """The most bytes the weights file may hold; RegistryCorrupt when its size cannot be the
    manifest's network's (`expected`)."""
    data = sum(tensor.numel() * tensor.element_size() for tensor in expected.values())
    most = data + 8 + _HEADER_SLACK_BYTES + _HEADER_BYTES_PER_TENSOR * len(expected)
    size = registry.file_size(name, version, WEIGHTS_FILE)
    if size is not None and not data < size <= most:
        raise RegistryCorrupt(
            f"{WEIGHTS_FILE} is {size:,} bytes, but the manifest's network holds {data:,} bytes of weights; "
            "the manifest does not describe these weights (restore the version or retrain)"
        )
    return most


def header_state(payload: bytes) -> State:
    """The tensors a safetensors payload declares, as meta tensors of their shapes: read from its
    JSON header alone, allocating none of the data. RegistryCorrupt when the header is not one,
    or a tensor's byte range does not fit its shape and the file."""
    try:
        length = int.from_bytes(payload[:8], "little")
        if not 0 < length <= len(payload) - 8:
            raise ValueError(f"a header of {length} bytes in a file of {len(payload)}")
        header = json.loads(payload[8 : 8 + length])
        state: State = {}
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            shape, (start, end) = tuple(int(n) for n in entry["shape"]), entry["data_offsets"]
            width = _DTYPE_BYTES[entry["dtype"]]
            if end - start != width * math.prod(shape) or not 0 <= start <= end <= len(payload) - 8 - length:
                raise ValueError(f"tensor {key!r}: its bytes do not fit its shape {list(shape)}")
            state[key] = torch.empty(shape, device="meta", dtype=_DTYPES[entry["dtype"]])
        return state
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistryCorrupt(
            f"weights do not fit the manifest's network: not a readable safetensors file ({_first_lines(exc)})"
        ) from exc


def check_header(manifest: Manifest, expected: State, payload: bytes) -> None:
    """The weights file's header against the manifest's network (`expected`, on the meta
    device): the same tensors, of the same shapes, and the manifest's input width. Nothing is
    allocated: a file that lies is refused before its tensors are."""
    declared = header_state(payload)
    check_manifest_fits(manifest, declared)
    for key in sorted(set(expected) | set(declared)):
        if key not in declared or key not in expected:
            missing = "missing from the file" if key not in declared else "not in the manifest's network"
            raise RegistryCorrupt(f"weights do not fit the manifest's network: tensor {key!r} is {missing}")
        if declared[key].shape != expected[key].shape:
            raise RegistryCorrupt(
                f"weights do not fit the manifest's network: tensor {key!r} is {list(declared[key].shape)} in the "
                f"file and {list(expected[key].shape)} in the network"
            )


@dataclass(frozen=True, slots=True)
class VerifiedWeights:
    """A version's manifest and its weights file, checked against each other, not yet read into
    tensors: what a worker whose forward passes run elsewhere needs, and what `rebuild` reads."""

    name: str
    version: int
    manifest: Manifest
    payload: bytes


def verified_weights(registry: Registry, name: str, version: int) -> VerifiedWeights:
    """The manifest checked against its folder, the weights file's size against the manifest's
    network (before reading it), the weights against the manifest's sha256 (`read_file`) and
    their header against the network (before any tensor is allocated)."""
    manifest = registry.manifest(name, version)
    expected = expected_state(manifest)
    try:
        most = _check_weights_size(registry, name, version, expected)
    except RegistryCorrupt as exc:
        raise _in_folder(registry, name, version, exc) from exc
    payload = registry.read_file(name, version, WEIGHTS_FILE, manifest, limit_bytes=most)
    try:
        check_header(manifest, expected, payload)
    except RegistryCorrupt as exc:
        raise _in_folder(registry, name, version, exc) from exc
    return VerifiedWeights(name, version, manifest, payload)


def _in_folder(registry: Registry, name: str, version: int, exc: RegistryCorrupt) -> RegistryCorrupt:
    return RegistryCorrupt(f"model {name!r} version {version} in {registry.version_location(name, version)}: {exc}")


def rebuild(registry: Registry, weights: VerifiedWeights, device: torch.device) -> RebuiltVersion:
    """The verified version's network and preprocessing, as a `Predictor` on `device`."""
    manifest = weights.manifest
    try:
        network = network_from_weights(manifest.network, manifest.layout, read_state(weights.payload))
    except RegistryCorrupt as exc:
        raise _in_folder(registry, weights.name, weights.version, exc) from exc
    return RebuiltVersion(
        manifest=manifest,
        predictor=Predictor(
            network, manifest.scaling, device, manifest.intervals.scale, manifest.covariates, manifest.season_length
        ),
    )


def load_predictor(registry: Registry, name: str, version: int, device: torch.device) -> RebuiltVersion:
    """Rebuild a version from the registry, verified as `verified_weights` says."""
    return rebuild(registry, verified_weights(registry, name, version), device)
