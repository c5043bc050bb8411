"""A manifest is checked before a version is rebuilt: calendar features the server cannot
compute, or features whose width is not the weights' input width, are refused with the version's
folder named; the width is read back right from every shape of network the trainer writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_file_bytes

import forecast.registry.weights as weights_module
from forecast.errors import RegistryCorrupt
from forecast.model.config import NetworkConfig, input_channels
from forecast.model.network import build_network, input_width_of
from forecast.registry.manifest import MANIFEST_FILE, REPORT_FILE, WEIGHTS_FILE
from forecast.registry.store import Registry
from forecast.registry.weights import load_predictor, read_state, verified_weights, weights_bytes
from forecast.series.features import feature_width
from tests.factories import make_manifest

FEATURES = ["hour_of_day", "day_of_week"]  # 5 input channels: the value and a sin/cos pair each


def publish(registry: Registry, features: list[str] = FEATURES) -> int:
    manifest = make_manifest(features=features, input_size=8, horizon=4)
    network = build_network(manifest.network, manifest.input_channels)
    return registry.publish("demo", {WEIGHTS_FILE: weights_bytes(network), REPORT_FILE: b"{}"}, manifest).version


def rewrite_features(registry: Registry, version: int, features: list[str]) -> None:
    path = registry.version_dir("demo", version) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["features"] = features
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "features",
    [["hour_of_day"], ["hour_of_day", "day_of_week", "month_of_year"], []],
    ids=["fewer", "more", "none"],
)
def test_features_whose_width_is_not_the_weights_input_are_refused_naming_the_folder(
    tmp_path: Path, features: list[str]
) -> None:
    registry = Registry(tmp_path)
    version = publish(registry)
    rewrite_features(registry, version, features)

    with pytest.raises(RegistryCorrupt) as refused:
        load_predictor(registry, "demo", version, torch.device("cpu"))
    message = str(refused.value)
    assert str(registry.version_dir("demo", version)) in message
    assert f"make {1 + 2 * len(features)} input channels" in message and "weights read 5" in message


@pytest.mark.parametrize("features", [["hour_of_day", "tide"], ["HOUR_OF_DAY", "day_of_week"]], ids=["made-up", "case"])
def test_unknown_features_of_the_right_width_are_refused(tmp_path: Path, features: list[str]) -> None:
    """Same width, so the weights fit: without this check the version would load, warm up on
    zeros and then fail every request. The manifest itself refuses them."""
    registry = Registry(tmp_path)
    version = publish(registry)
    rewrite_features(registry, version, features)

    with pytest.raises(
        RegistryCorrupt, match=r"manifest.json is invalid \(features: .*unknown calendar features"
    ) as refused:
        load_predictor(registry, "demo", version, torch.device("cpu"))
    assert str(registry.version_dir("demo", version)) in str(refused.value)


def test_the_same_features_in_another_order_still_load(tmp_path: Path) -> None:
    """Not a lie the weights can reveal; the width is what is checked."""
    registry = Registry(tmp_path)
    version = publish(registry)
    rewrite_features(registry, version, list(reversed(FEATURES)))
    assert load_predictor(registry, "demo", version, torch.device("cpu")).manifest.features == [
        "day_of_week",
        "hour_of_day",
    ]


@pytest.mark.parametrize(
    "config",
    [
        NetworkConfig(arch="lstm", input_size=48, horizon=12, hidden_size=16),
        NetworkConfig(arch="gru", input_size=48, horizon=12, hidden_size=16, segment_length=24),
        NetworkConfig(arch="rnn", input_size=24, horizon=6, hidden_size=8, num_layers=2, ensemble=3),
        NetworkConfig(arch="lstm", input_size=48, horizon=12, hidden_size=16, segment_length=12, ensemble=2),
    ],
    ids=["plain", "segments", "ensemble-2-layers", "ensemble-segments"],
)
@pytest.mark.parametrize("features", [[], ["hour_of_day"], ["hour_of_day", "day_of_week", "day_of_year"]])
def test_the_input_width_is_read_back_from_every_shape_of_network(config: NetworkConfig, features: list[str]) -> None:
    channels = input_channels(feature_width(features))
    state = read_state(weights_bytes(build_network(config, channels)))
    assert input_width_of(state, config) == channels


def test_a_network_that_reads_the_value_alone_has_no_width_to_check() -> None:
    config = NetworkConfig(arch="gru", input_size=24, horizon=6, recurrent=False)
    state = read_state(weights_bytes(build_network(config, 5)))
    assert input_width_of(state, config) is None


def _rewrite_network(registry: Registry, version: int, **network: int) -> None:
    path = registry.version_dir("demo", version) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["training"]["network"].update(network)
    path.write_text(json.dumps(manifest))


_PEAK_RSS = """
import resource, sys, torch
from forecast.errors import RegistryCorrupt
from forecast.registry.store import Registry
from forecast.registry.weights import load_predictor
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_predictor(Registry(sys.argv[1]), "demo", 1, torch.device("cpu"))
except RegistryCorrupt as exc:
    print(exc, file=sys.stderr)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_a_manifest_claiming_a_wider_network_than_its_weights_costs_no_memory(tmp_path: Path) -> None:
    """8 members of 4 layers of 4,096 over a few KB of real weights: about 8 GB if built. The file's
    size is checked against the network built on the meta device first, so the load is refused
    before anything of that size exists (peak memory in a fresh process)."""
    import subprocess
    import sys

    registry = Registry(tmp_path)
    version = publish(registry)
    _rewrite_network(registry, version, hidden_size=4096, num_layers=4, ensemble=8)
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert "bytes of weights" in run.stderr and "does not describe these weights" in run.stderr, run.stderr
    assert int(run.stdout.strip()) < 200, f"the refused load grew the process by {run.stdout.strip()} MB"


def test_a_network_past_the_bounds_is_refused_by_the_manifest(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = publish(registry)
    _rewrite_network(registry, version, num_layers=10_000)
    with pytest.raises(RegistryCorrupt, match="num_layers"):
        load_predictor(registry, "demo", version, torch.device("cpu"))


def test_a_weights_file_larger_than_its_network_is_refused_unread(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = publish(registry)
    weights = registry.version_dir("demo", version) / WEIGHTS_FILE
    with weights.open("ab") as handle:
        handle.truncate(weights.stat().st_size + 50_000_000)  # sparse: 50 MB claimed, nothing written
    with pytest.raises(RegistryCorrupt, match=r"is 5\d,\d{3},\d{3} bytes, but the manifest's network holds"):
        load_predictor(registry, "demo", version, torch.device("cpu"))


def test_a_header_whose_shapes_are_not_the_networks_is_refused_before_any_tensor_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights of the right size and checksum whose header declares a matrix transposed: refused
    from the header alone, naming the tensor and both shapes; no tensor is read."""
    registry = Registry(tmp_path)
    manifest = make_manifest(features=FEATURES, input_size=8, horizon=4)
    network = build_network(manifest.network, manifest.input_channels)
    state = {key: tensor.detach().clone() for key, tensor in network.state_dict().items()}
    key = next(  # not the first layer, whose width the input check reads
        key
        for key, tensor in state.items()
        if tensor.dim() == 2
        and tensor.shape[0] != tensor.shape[1]
        and not key.endswith(("weight_ih_l0", "embed.weight"))
    )
    state[key] = state[key].t().contiguous()
    version = registry.publish("demo", {WEIGHTS_FILE: save_file_bytes(state), REPORT_FILE: b"{}"}, manifest).version

    def never(payload: bytes) -> dict[str, torch.Tensor]:
        raise AssertionError("the tensors were read before the header was checked")

    monkeypatch.setattr(weights_module, "read_state", never)
    wrong, right = list(state[key].shape), list(network.state_dict()[key].shape)
    with pytest.raises(
        RegistryCorrupt, match=re.escape(f"tensor '{key}' is {wrong} in the file and {right} in the network")
    ):
        load_predictor(registry, "demo", version, torch.device("cpu"))
    with pytest.raises(RegistryCorrupt, match=rf"tensor '{key}'"):
        verified_weights(registry, "demo", version)  # a per-device worker's check: the same refusal, no network
