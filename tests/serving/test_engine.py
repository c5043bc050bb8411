"""The engine on a real registry folder: a new version or a moved alias is served after a
refresh; a version that lost its alias is retired only after its last lease; a version asked for
by number is loaded on demand and unloaded once idle; a version that fails to load leaves the
working one serving."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import forecast.serving.engine as engine_module
from forecast.errors import VersionNotFound
from forecast.model.intervals import calibrate
from forecast.model.network import Forecaster
from forecast.registry.manifest import REPORT_FILE, WEIGHTS_FILE
from forecast.registry.store import PRODUCTION, Registry
from forecast.registry.weights import weights_bytes
from forecast.serving.engine import Engine
from forecast.serving.telemetry import LOAD_FAILURES
from forecast.settings import Settings
from tests.registry_writer import SMALL_CHANNELS, SMALL_NETWORK, make_manifest

NAME = "demo"


def publish_network(registry: Registry, name: str) -> int:
    """A small GRU with random weights and a real calibration (the engine serves intervals)."""
    torch.manual_seed(registry.versions(name)[-1] if registry.versions(name) else 0)
    network = Forecaster(SMALL_NETWORK, SMALL_CHANNELS)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    scores = np.abs(np.random.default_rng(0).normal(size=(50, SMALL_NETWORK.horizon)))  # (W, H)
    draft = make_manifest(name, 0, {}).model_copy(update={"intervals": calibrate(scores)})
    files = {WEIGHTS_FILE: weights_bytes(network), REPORT_FILE: b"{}"}
    return registry.publish(name, files, draft).version


class Posted:
    """A series as a client posts it: values with a start (the SMALL_NETWORK's input is 8)."""

    def __init__(self, series_id: str, values: list[float]) -> None:
        self.id, self.values, self.timestamps, self.start, self.freq = series_id, values, None, "2024-01-01T00:00", "h"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    version = publish_network(registry, NAME)
    with registry.locked(NAME):
        registry.set_alias(NAME, PRODUCTION, version)
    return registry


def with_engine(registry: Registry, scenario: Callable[[Engine], Awaitable[None]]) -> None:
    """Run a scenario against a started engine, in a fresh event loop. The watcher would refresh
    by itself; the scenarios call refresh() so that nothing depends on timing."""

    async def run() -> None:
        engine = Engine(registry, Settings(registry=str(registry.root), device="cpu", reload_seconds=3600))
        await engine.start()
        try:
            await scenario(engine)
        finally:
            await engine.stop()

    asyncio.run(run())


async def served_version(engine: Engine, **wanted: object) -> int:
    async with engine.lease(NAME, **wanted) as served:  # type: ignore[arg-type]
        return served.manifest.version


def move_production(registry: Registry, version: int) -> None:
    with registry.locked(NAME):
        registry.set_alias(NAME, PRODUCTION, version)


def test_a_new_version_and_a_moved_alias_are_served_after_a_refresh(registry: Registry) -> None:
    async def scenario(engine: Engine) -> None:
        assert await served_version(engine) == 1
        version = publish_network(registry, NAME)
        await engine.refresh()
        assert await served_version(engine) == 1, "a new version is not served until an alias points at it"

        move_production(registry, version)
        await engine.refresh()
        assert await served_version(engine) == 2
        assert engine.served_aliases(NAME) == {PRODUCTION: 2}

    with_engine(registry, scenario)


def test_a_version_that_lost_its_alias_is_retired_only_after_its_last_lease(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "_IDLE_UNLOAD_S", 0.0)  # retire as soon as nothing holds it

    async def scenario(engine: Engine) -> None:
        async with engine.lease(NAME) as held:
            move_production(registry, publish_network(registry, NAME))
            await engine.refresh()
            assert engine.is_loaded(NAME, 1), "retired while a request still holds it"
            posted = [Posted("a", [1.0] * 8)]
            answer = await held.pipeline.forecast(posted, horizon=None, levels=[80.0], timeout_s=10.0)
            assert answer.mean.shape == (1, 4)  # the old version still forecasts for its request
        await engine.refresh()
        assert not engine.is_loaded(NAME, 1)
        assert engine.is_loaded(NAME, 2)

    with_engine(registry, scenario)


def test_an_explicit_version_is_loaded_on_demand_and_unloaded_once_idle(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(engine: Engine) -> None:
        monkeypatch.setattr(engine_module, "_IDLE_UNLOAD_S", 0.0)
        move_production(registry, publish_network(registry, NAME))
        await engine.refresh()
        assert not engine.is_loaded(NAME, 1)

        monkeypatch.setattr(engine_module, "_IDLE_UNLOAD_S", 300.0)
        assert await served_version(engine, version=1) == 1
        await engine.refresh()
        assert engine.is_loaded(NAME, 1), "used a moment ago: kept for the next request"

        monkeypatch.setattr(engine_module, "_IDLE_UNLOAD_S", 0.0)
        await engine.refresh()
        assert not engine.is_loaded(NAME, 1)
        with pytest.raises(VersionNotFound, match="no version 9"):
            await served_version(engine, version=9)

    with_engine(registry, scenario)


def test_a_version_that_fails_to_load_leaves_the_working_one_serving(registry: Registry) -> None:
    async def scenario(engine: Engine) -> None:
        version = publish_network(registry, NAME)
        weights = registry.version_dir(NAME, version) / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # fails its sha256
        failures = LOAD_FAILURES.labels(NAME)._value.get()
        move_production(registry, version)

        await engine.refresh()
        assert await served_version(engine) == 1
        assert engine.served_aliases(NAME) == {PRODUCTION: 1}
        assert LOAD_FAILURES.labels(NAME)._value.get() == failures + 1

    with_engine(registry, scenario)


def test_stop_drains_and_refuses_new_requests(registry: Registry) -> None:
    async def scenario(engine: Engine) -> None:
        async with engine.lease(NAME) as served:
            pending = asyncio.ensure_future(
                served.pipeline.forecast([Posted("a", [2.0] * 8)], horizon=2, levels=[], timeout_s=10.0)
            )
            await engine.stop()
            assert (await pending).mean.shape == (1, 2), "queued work is finished, not dropped"
        assert not engine.ready

    with_engine(registry, scenario)
