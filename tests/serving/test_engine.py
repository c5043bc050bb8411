"""The engine on a real registry folder: a new version or a moved alias is served after a
refresh; a version that lost its alias is retired only after its last lease; a version asked for
by number is loaded on demand, kept while used and evicted when idle or beyond the cap.

And the registry's last good state keeps serving: an unreadable or empty registry, a torn or
hostile aliases.json, a version that fails to load (with any exception), a copied folder or a
manifest that the request path cannot serve leave what works serving, are reported in the
engine's health, and are retried, so that the fault's end is noticed without a restart."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import forecast.serving.versions as versions_module
from forecast.errors import ModelNotFound, RegistryCorrupt, VersionLoading, VersionNotFound
from forecast.registry.manifest import MANIFEST_FILE, WEIGHTS_FILE, Manifest
from forecast.registry.store import PRODUCTION, Registry
from forecast.registry.weights import VerifiedWeights
from forecast.serving.engine import Engine
from forecast.serving.pipeline import BuildNetwork, Forward, ForwardFactory, network_forward
from forecast.serving.telemetry import LOAD_FAILURES, REGISTRY_LAST_SCAN_OK, REGISTRY_SCAN_ERRORS
from forecast.settings import Settings
from tests.factories import Posted
from tests.support.registries import publish_network

NAME = "demo"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry")
    version = publish_network(registry, NAME)
    with registry.locked(NAME):
        registry.set_alias(NAME, PRODUCTION, version)
    return registry


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, int]]:
    """How many times each version was read and rebuilt from the registry (weights hashed)."""
    counted: Counter[tuple[str, int]] = Counter()
    real = versions_module.verified_weights

    def counting(registry: Registry, name: str, version: int) -> VerifiedWeights:
        counted[(name, version)] += 1
        return real(registry, name, version)

    monkeypatch.setattr(versions_module, "verified_weights", counting)
    return counted


def with_engine(
    registry: Registry,
    scenario: Callable[[Engine], Awaitable[None]],
    forward_factory: ForwardFactory = network_forward,
    **settings: object,
) -> None:
    """Run a scenario against a started engine, in a fresh event loop. The watcher would refresh
    by itself; the scenarios call refresh() so that nothing depends on timing."""

    async def run() -> None:
        options: dict[str, object] = {"registry": str(registry.root), "device": "cpu", "reload_seconds": 3600}
        engine = Engine(registry, Settings(**{**options, **settings}), forward_factory)  # type: ignore[arg-type]
        await engine.start()
        try:
            await scenario(engine)
        finally:
            await engine.stop()

    asyncio.run(run())


async def served_version(engine: Engine, name: str = NAME, **wanted: object) -> int:
    async with engine.lease(name, **wanted) as served:  # type: ignore[arg-type]
        return served.manifest.version


def move_alias(registry: Registry, version: int, alias: str = PRODUCTION, name: str = NAME) -> None:
    with registry.locked(name):
        registry.set_alias(name, alias, version)


def failures_of(name: str) -> float:
    return float(LOAD_FAILURES.labels(name)._value.get())


def problems(engine: Engine, name: str = NAME) -> list[dict[str, object]]:
    return [
        {"alias": p.alias, "wanted": p.wanted, "served": p.served, "error": p.error}
        for p in engine.health().problems.get(name, [])
    ]


def corrupt_weights(registry: Registry, version: int) -> bytes:
    """Damage a version's weights so that they fail their sha256; returns the good bytes."""
    weights = registry.version_dir(NAME, version) / WEIGHTS_FILE
    good = weights.read_bytes()
    weights.write_bytes(good[:-8] + b"\0" * 8)
    return good


# ---- hot reload, leases, idle unload -------------------------------------------------------


def test_a_new_version_and_a_moved_alias_are_served_after_a_refresh(registry: Registry) -> None:
    async def scenario(engine: Engine) -> None:
        assert await served_version(engine) == 1
        version = publish_network(registry, NAME)
        await engine.refresh()
        assert await served_version(engine) == 1, "a new version is not served until an alias points at it"

        move_alias(registry, version)
        await engine.refresh()
        assert await served_version(engine) == 2
        assert engine.served_aliases(NAME) == {PRODUCTION: 2}
        assert engine.health().problems == {} and not engine.health().degraded

    with_engine(registry, scenario)


def test_a_slow_load_delays_no_other_models_reload_and_is_served_once_it_ends(registry: Registry) -> None:
    """A version whose load hangs (a huge file on slow storage, a network built for tens of
    seconds) holds up neither the refresh nor another model's new version; its alias switches as
    soon as it is loaded, without waiting for the next poll."""
    release = threading.Event()

    def factory(manifest: Manifest, build: BuildNetwork) -> Forward:
        if manifest.name == "slow":  # runs inside the version's load, on a worker thread
            assert release.wait(30), "the test never released the slow load"
        return network_forward(manifest, build)

    async def scenario(engine: Engine) -> None:
        try:
            move_alias(registry, publish_network(registry, "slow"), name="slow")
            move_alias(registry, publish_network(registry, NAME))
            await engine.refresh()  # waits for the loads up to reload_seconds, then moves on
            assert await served_version(engine) == 2, "the slow load held up another model's new version"
            assert engine.health().problems == {}, "a load under way is not a fault"
            with pytest.raises(VersionLoading, match="'slow' alias 'production' points at version 1, which is still"):
                await served_version(engine, "slow")
        finally:
            release.set()
        for _ in range(500):  # switched when the load ends (the watcher wakes), at the latest at its next poll
            if engine.served_aliases("slow"):
                break
            await asyncio.sleep(0.01)
        assert await served_version(engine, "slow") == 1

    with_engine(registry, scenario, forward_factory=factory, reload_seconds=0.3)


def test_a_version_that_lost_its_alias_is_retired_only_after_its_last_lease(registry: Registry) -> None:
    async def scenario(engine: Engine) -> None:
        async with engine.lease(NAME) as held:
            move_alias(registry, publish_network(registry, NAME))
            await engine.refresh()
            assert engine.is_loaded(NAME, 1), "retired while a request still holds it"
            posted = [Posted("a", [1.0] * 8)]
            answer = await held.pipeline.forecast(posted, horizon=None, levels=[80.0], timeout_s=10.0)
            assert answer.mean.shape == (1, 4)  # the old version still forecasts for its request
        await engine.refresh()
        assert not engine.is_loaded(NAME, 1)
        assert engine.is_loaded(NAME, 2)

    with_engine(registry, scenario, idle_unload_s=0.0)  # retire as soon as nothing holds it


def test_an_explicit_version_stays_loaded_while_used_and_is_unloaded_once_idle(
    registry: Registry, loads: Counter[tuple[str, int]]
) -> None:
    async def scenario(engine: Engine) -> None:
        move_alias(registry, publish_network(registry, NAME))
        await engine.refresh()
        assert engine.is_loaded(NAME, 1), "lost its alias a moment ago: kept for a while, like any version"

        assert await served_version(engine, version=1) == 1
        for _ in range(3):
            await engine.refresh()
            assert await served_version(engine, version=1) == 1
        assert loads[(NAME, 1)] == 1, "each request for the version reloaded and re-hashed it"

        engine.settings = engine.settings.model_copy(update={"idle_unload_s": 0.0})
        await engine.refresh()
        assert not engine.is_loaded(NAME, 1)
        assert engine.is_loaded(NAME, 2), "an aliased version is never idle-unloaded"
        with pytest.raises(VersionNotFound, match="no version 9"):
            await served_version(engine, version=9)

    with_engine(registry, scenario)


def test_a_version_of_a_model_without_a_served_alias_is_not_unloaded_at_the_next_poll(
    registry: Registry, loads: Counter[tuple[str, int]]
) -> None:
    publish_network(registry, "plain")  # a model nobody aliased yet: served only by number

    async def scenario(engine: Engine) -> None:
        with pytest.raises(VersionNotFound, match="no alias 'production'"):
            await served_version(engine, "plain")
        assert await served_version(engine, "plain", version=1) == 1
        for _ in range(3):
            await engine.refresh()
            assert engine.is_loaded("plain", 1)
            assert await served_version(engine, "plain", version=1) == 1
        assert loads[("plain", 1)] == 1

    with_engine(registry, scenario)


def test_versions_beyond_the_cap_are_evicted_least_recently_used_but_never_while_leased(registry: Registry) -> None:
    for _ in range(3):
        publish_network(registry, NAME)  # versions 2, 3, 4; production stays on 1

    async def scenario(engine: Engine) -> None:
        assert await served_version(engine, version=2) == 2
        assert await served_version(engine, version=3) == 3
        assert engine.is_loaded(NAME, 1), "the aliased version is kept beyond the cap"
        assert not engine.is_loaded(NAME, 2), "the least recently used went first"
        assert engine.is_loaded(NAME, 3)

        async with engine.lease(NAME, version=3):
            assert await served_version(engine, version=4) == 4
            assert engine.is_loaded(NAME, 3), "evicted while a request holds it"
            assert engine.is_loaded(NAME, 4)
        await engine.refresh()
        loaded = [v for v in (1, 2, 3, 4) if engine.is_loaded(NAME, v)]
        assert loaded == [1, 3], "back under the cap once the lease ended; 3's request ended last"

    with_engine(registry, scenario, max_loaded_versions=2)


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


# ---- failed loads: confined, reported, retried ---------------------------------------------


def test_a_version_that_fails_to_load_leaves_the_working_one_serving_and_says_why(registry: Registry) -> None:
    async def scenario(engine: Engine) -> None:
        version = publish_network(registry, NAME)
        corrupt_weights(registry, version)
        failures = failures_of(NAME)
        move_alias(registry, version)

        await engine.refresh()
        assert await served_version(engine) == 1
        assert engine.served_aliases(NAME) == {PRODUCTION: 1}
        assert failures_of(NAME) == failures + 1
        [problem] = problems(engine)
        assert (problem["alias"], problem["wanted"], problem["served"]) == (PRODUCTION, 2, 1)
        assert "sha256" in str(problem["error"])
        assert engine.health().degraded and engine.ready, "degraded, but the last good state still serves"
        with pytest.raises(RegistryCorrupt, match=r"'demo' version 2: .*sha256"):
            await served_version(engine, version=2)

    with_engine(registry, scenario)


def test_an_unchanged_broken_version_is_not_reread_but_changed_files_are_retried_at_once(
    registry: Registry, loads: Counter[tuple[str, int]]
) -> None:
    """Weights that arrive after their manifest: the first load fails, the alias waits on the
    working version, and the version is served as soon as its files are whole."""

    async def scenario(engine: Engine) -> None:
        version = publish_network(registry, NAME)
        weights = registry.version_dir(NAME, version) / WEIGHTS_FILE
        arrived = weights.read_bytes()
        weights.unlink()
        move_alias(registry, version)

        for _ in range(3):
            await engine.refresh()
        with pytest.raises(RegistryCorrupt, match=r"cannot read model\.safetensors"):
            await served_version(engine, version=version)
        assert loads[(NAME, version)] == 1, "an unchanged broken version was re-read within its backoff"
        assert await served_version(engine) == 1

        weights.write_bytes(arrived)
        await engine.refresh()
        assert await served_version(engine) == version, "blacklisted: the alias moved but the old version serves"
        assert problems(engine) == []
        assert loads[(NAME, version)] == 2

    with_engine(registry, scenario)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError(), KeyError("members.0.head")],
    ids=["torch-runtime", "memory", "key"],
)
def test_any_exception_loading_a_version_is_confined_to_it_at_start_up_and_on_refresh(
    registry: Registry, error: Exception
) -> None:
    publish_network(registry, "other")
    move_alias(registry, 1, name="other")
    broken = {("other", 1)}

    def factory(manifest: Manifest, build: BuildNetwork) -> Forward:
        if (manifest.name, manifest.version) in broken:
            raise error
        return network_forward(manifest, build)

    async def scenario(engine: Engine) -> None:
        assert engine.ready, "a version that raises at start-up stopped the server"
        assert await served_version(engine) == 1
        [problem] = problems(engine, "other")
        assert problem["wanted"] == 1 and problem["served"] is None
        assert type(error).__name__ in str(problem["error"])
        with pytest.raises(RegistryCorrupt, match="'other' alias 'production' cannot be served"):
            await served_version(engine, "other")

        move_alias(registry, publish_network(registry, NAME))  # hot reload goes on around the broken one
        broken.add((NAME, 3))
        await engine.refresh()
        assert await served_version(engine) == 2
        broken.clear()
        (registry.version_dir("other", 1) / MANIFEST_FILE).touch()  # new files: retried at once
        await engine.refresh()
        assert await served_version(engine, "other") == 1

    with_engine(registry, scenario, forward_factory=factory)


def test_a_manifest_the_request_path_cannot_serve_is_refused_at_warm_up(registry: Registry) -> None:
    """Its weights fit, so it loads; only a warm-up through the request path shows that every
    request would fail (here: a frequency no series can have)."""

    async def scenario(engine: Engine) -> None:
        version = publish_network(registry, NAME)
        path = registry.version_dir(NAME, version) / MANIFEST_FILE
        path.write_text(path.read_text().replace('"freq": "h"', '"freq": "fortnightly"'))
        move_alias(registry, version)
        await engine.refresh()

        assert await served_version(engine) == 1
        [problem] = problems(engine)
        assert (problem["wanted"], problem["served"]) == (version, 1)
        assert "fortnightly" in str(problem["error"])

    with_engine(registry, scenario)


def test_a_copied_version_folder_is_refused_naming_the_folder(registry: Registry) -> None:
    shutil.copytree(registry.version_dir(NAME, 1), registry.version_dir(NAME, 7))
    shutil.copytree(registry.model_dir(NAME), registry.model_dir("copy"))
    move_alias(registry, 7, alias="canary")

    async def scenario(engine: Engine) -> None:
        assert await served_version(engine) == 1
        [canary] = problems(engine)
        assert canary["alias"] == "canary" and str(registry.version_dir(NAME, 7)) in str(canary["error"])
        with pytest.raises(RegistryCorrupt, match=r"'demo' version 7: .*describes model 'demo' version 1"):
            await served_version(engine, version=7)
        with pytest.raises(RegistryCorrupt, match=r"describes model 'demo' version 1") as refused:
            await served_version(engine, "copy")
        assert str(registry.version_dir("copy", 1)) in str(refused.value)
        assert not engine.is_loaded("copy", 1)

    with_engine(registry, scenario)


# ---- scans: an unreadable or empty registry, torn and hostile alias files ------------------


def test_a_registry_renamed_away_keeps_serving_and_is_reported_until_it_is_back(registry: Registry) -> None:
    away = registry.root.with_name("registry-away")

    async def scenario(engine: Engine) -> None:
        pinned = publish_network(registry, NAME)
        assert await served_version(engine, version=pinned) == pinned  # loaded by number, no alias
        engine.settings = engine.settings.model_copy(update={"idle_unload_s": 0.0})
        errors = REGISTRY_SCAN_ERRORS._value.get()
        registry.root.rename(away)
        for _ in range(3):
            await engine.refresh()
            assert await served_version(engine) == 1
        assert engine.is_loaded(NAME, pinned), "unloaded while nothing could load it again"
        assert await served_version(engine, version=pinned) == pinned
        health = engine.health()
        assert not health.registry.ok and health.registry.consecutive_failures == 3
        assert "cannot list the registry" in str(health.registry.last_error)
        assert engine.ready and health.degraded
        assert REGISTRY_SCAN_ERRORS._value.get() == errors + 3 and REGISTRY_LAST_SCAN_OK._value.get() == 0

        registry.root.mkdir()  # an empty mount point in its place
        await engine.refresh()
        assert await served_version(engine) == 1
        assert "holds no models" in str(engine.health().registry.last_error)

        registry.root.rmdir()
        away.rename(registry.root)
        move_alias(registry, publish_network(registry, NAME))
        await engine.refresh()
        assert engine.health().registry.ok and REGISTRY_LAST_SCAN_OK._value.get() == 1
        assert await served_version(engine) == 3, "the registry is back: hot reload works again"

    with_engine(registry, scenario)


def _deep(path: Path) -> None:
    path.write_text("[" * 100_000)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _huge(path: Path) -> None:
    path.write_text('{"production": 1, "pad": "' + "x" * (2 << 20) + '"}')


HOSTILE_ALIASES: dict[str, Callable[[Path], None]] = {
    "truncated": lambda path: path.write_text('{"production": 2, "stag'),
    "half-written": lambda path: path.write_text(""),
    "string-version": lambda path: path.write_text('{"production": "2"}'),
    "bool-version": lambda path: path.write_text('{"production": true}'),
    "zero-version": lambda path: path.write_text('{"production": 0}'),
    "list": lambda path: path.write_text("[2]"),
    "bad-alias-name": lambda path: path.write_text('{"../production": 2}'),
    "not-utf8": lambda path: path.write_bytes(b'{"production": \xff}'),
    "deeply-nested": _deep,
    "fifo": _fifo,
    "directory": _directory,
    "huge": _huge,
}


@pytest.mark.parametrize("damage", HOSTILE_ALIASES.values(), ids=HOSTILE_ALIASES.keys())
def test_a_torn_or_hostile_aliases_file_changes_nothing_served(
    registry: Registry, damage: Callable[[Path], None]
) -> None:
    publish_network(registry, NAME)
    move_alias(registry, 1, alias="staging")

    async def scenario(engine: Engine) -> None:
        path = registry.model_dir(NAME) / "aliases.json"
        damage(path)
        for _ in range(2):
            await engine.refresh()
            assert await served_version(engine) == 1
            assert await served_version(engine, alias="staging") == 1
        assert engine.served_aliases(NAME) == {PRODUCTION: 1, "staging": 1}
        [problem] = problems(engine)
        assert problem["alias"] is None and "aliases.json" in str(problem["error"])
        assert len(str(problem["error"])) <= 300

        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
        path.write_text(json.dumps({PRODUCTION: 2}))  # repaired, and moved on purpose
        await engine.refresh()
        assert engine.served_aliases(NAME) == {PRODUCTION: 2}
        assert problems(engine) == []

    with_engine(registry, scenario)


def test_a_vanished_aliases_file_keeps_the_aliases_and_an_explicit_empty_one_unserves(registry: Registry) -> None:
    async def scenario(engine: Engine) -> None:
        path = registry.model_dir(NAME) / "aliases.json"
        path.unlink()
        await engine.refresh()
        assert await served_version(engine) == 1
        assert "missing" in str(problems(engine)[0]["error"])

        path.write_text("{}")
        await engine.refresh()
        assert engine.served_aliases(NAME) == {}
        with pytest.raises(VersionNotFound, match="no alias 'production'"):
            await served_version(engine)

    with_engine(registry, scenario)


def test_an_alias_to_a_missing_version_keeps_the_served_one(registry: Registry) -> None:
    async def scenario(engine: Engine) -> None:
        (registry.model_dir(NAME) / "aliases.json").write_text(json.dumps({PRODUCTION: 9}))
        await engine.refresh()
        assert await served_version(engine) == 1
        assert problems(engine) == [
            {"alias": PRODUCTION, "wanted": 9, "served": 1, "error": "version 9 is not in the registry"}
        ]

    with_engine(registry, scenario)


def test_a_model_removed_from_a_readable_registry_is_no_longer_served(registry: Registry) -> None:
    publish_network(registry, "other")
    move_alias(registry, 1, name="other")

    async def scenario(engine: Engine) -> None:
        assert await served_version(engine, "other") == 1
        shutil.rmtree(registry.model_dir("other"))
        await engine.refresh()
        with pytest.raises(ModelNotFound, match="'other' is not served"):
            await served_version(engine, "other")
        assert not engine.is_loaded("other", 1), "a deleted model still answers by version number"
        with pytest.raises(ModelNotFound, match="'other' is not in the registry"):
            await served_version(engine, "other", version=1)
        assert await served_version(engine) == 1

    with_engine(registry, scenario)


def test_a_new_model_whose_aliases_file_is_torn_says_so(registry: Registry) -> None:
    publish_network(registry, "fresh")
    (registry.model_dir("fresh") / "aliases.json").write_text('{"production": 1')

    async def scenario(engine: Engine) -> None:
        with pytest.raises(RegistryCorrupt, match=r"'fresh' alias 'production' cannot be served: .*aliases\.json"):
            await served_version(engine, "fresh")
        assert await served_version(engine, "fresh", version=1) == 1, "its versions still serve by number"

    with_engine(registry, scenario)


def test_an_unreadable_registry_at_start_up_is_not_ready_until_it_can_be_read(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "not-yet")

    async def scenario(engine: Engine) -> None:
        assert not engine.ready, "ready with no registry to serve from"
        version = publish_network(registry, NAME)
        move_alias(registry, version)
        await engine.refresh()
        assert engine.ready and await served_version(engine) == 1

    with_engine(registry, scenario)
