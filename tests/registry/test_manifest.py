"""The manifest: it round-trips through JSON exactly, the network's shape is stored once (in the
training config) and flags given flat override it, the block sizes default to the horizon, a
manifest written before the shape moved still loads, and NaN is refused before it is written."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from forecast.config.training import TrainingConfig
from forecast.model.config import InputLayout, NetworkConfig
from forecast.registry.manifest import Manifest
from forecast.registry.store import Registry
from forecast.serving.engine import Engine
from forecast.settings import Settings
from tests.factories import Posted, make_manifest


def test_a_manifest_round_trips_through_json() -> None:
    manifest = make_manifest(arch="lstm", input_size=24, horizon=6)
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest


def test_the_network_shape_is_stored_once_inside_the_training_config() -> None:
    stored = json.loads(make_manifest(arch="gru", input_size=24, horizon=6).model_dump_json())
    assert "network" not in stored
    assert stored["training"]["network"]["arch"] == "gru"
    assert (stored["training"]["network"]["input_size"], stored["training"]["network"]["horizon"]) == (24, 6)


def test_flat_settings_override_a_nested_network() -> None:
    production = TrainingConfig(arch="lstm", input_size=168, horizon=24, hidden_size=64)
    retrained = TrainingConfig.model_validate({**production.model_dump(), "hidden_size": 128, "max_epochs": 3})
    assert retrained.network == NetworkConfig(arch="lstm", input_size=168, horizon=24, hidden_size=128)
    assert retrained.max_epochs == 3


def test_block_sizes_default_to_the_horizon() -> None:
    config = TrainingConfig(arch="rnn", input_size=10, horizon=7)
    assert (config.val_block_size, config.test_block_size) == (7, 7)
    sized = TrainingConfig(arch="rnn", input_size=10, horizon=7, val_size=30, test_size=40)
    assert (sized.val_block_size, sized.test_block_size) == (30, 40)


def test_a_manifest_written_with_a_top_level_network_still_loads() -> None:
    manifest = make_manifest(arch="gru", input_size=12, horizon=3)
    stored = json.loads(manifest.model_dump_json())
    network = stored["training"].pop("network")
    stored["training"].update(network)  # the flat training settings of format 1
    stored["network"] = {**network, "n_features": 5}  # and its copy of the shape
    loaded = Manifest.model_validate(stored)
    assert loaded.network == manifest.network
    assert loaded.input_channels == 1 + 2 * len(manifest.features)


def test_a_nan_metric_is_refused() -> None:
    stored = json.loads(make_manifest().model_dump_json())
    stored["metrics"] = {"test": {"model": {"mae": math.nan}}}
    with pytest.raises(ValidationError, match="finite"):
        Manifest.model_validate(stored)


def test_unknown_training_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="hidden_sise"):
        TrainingConfig.model_validate({"arch": "lstm", "input_size": 8, "horizon": 2, "hidden_sise": 3})


FORMAT_2 = Path(__file__).parents[1] / "data" / "format2-registry"


def test_a_version_written_before_covariates_serves_exactly_what_it_forecast_then(tmp_path: Path) -> None:
    """A format-2 version (tests/data/README.md) loads as a version without covariates that does
    not read the horizon's inputs, and today's serving path forecasts its report's test origins
    as the code that wrote it did."""
    root = tmp_path / "registry"
    shutil.copytree(FORMAT_2, root)
    loaded = Registry(root).manifest("format2", 1)
    assert loaded.format_version == 2
    assert loaded.covariates.empty and loaded.network.horizon_inputs is None
    assert loaded.layout == InputLayout(calendar=2 * len(loaded.features))
    samples = json.loads((root / "format2" / "versions" / "1" / "report.json").read_text())["samples"]
    posted = [
        Posted(f"s{index}", sample["history"], start=None, freq=None, timestamps=sample["history_timestamps"])
        for index, sample in enumerate(samples)
    ]

    async def serve() -> list[list[float]]:
        engine = Engine(Registry(root), Settings(registry=str(root), device="cpu", reload_seconds=3600))
        await engine.start()
        try:
            async with engine.lease("format2") as served:
                answer = await served.pipeline.forecast(posted, horizon=None, levels=[], timeout_s=30.0)
                return answer.mean.tolist()
        finally:
            await engine.stop()

    served = asyncio.run(serve())
    for forecast, sample in zip(served, samples, strict=True):
        assert forecast == pytest.approx(sample["forecast"], abs=1e-5)
