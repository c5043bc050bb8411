"""The registry on S3, against a real S3 API over HTTP (moto's server in its own process): the
layout of the disk under the prefix, checksums, hostile aliases and lying manifests refused as on
disk, cheap polling, and the guarantees under SIGKILL and racing writers and promoters."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from forecast.errors import AliasMoved, InvalidSetting, RegistryCorrupt, VersionNotFound
from forecast.registry.manifest import MANIFEST_FILE, REPORT_FILE, WEIGHTS_FILE
from forecast.registry.storage import ObjectIdentity
from forecast.registry.storage.s3 import S3Storage
from forecast.registry.store import PRODUCTION, Registry, open_registry
from forecast.registry.weights import load_predictor, weights_bytes
from forecast.serving.engine import Engine
from forecast.serving.scan import scan_registry
from forecast.settings import Settings
from tests.support.registries import Writers, kill_quietly, publish_network, publish_tagged, wait_for
from tests.support.registry_writer import check_version
from tests.support.s3 import S3Server


def s3_registry(url: str) -> Registry:
    return open_registry(url)  # the endpoint from FORECAST_S3_ENDPOINT_URL, as in production


def count_requests(registry: Registry) -> Counter[str]:
    """The S3 operations the registry's client sends from now on (botocore's own event hook)."""
    counted: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counted[model.name] += 1

    storage = registry.storage
    assert isinstance(storage, S3Storage)
    storage._s3().meta.events.register("before-call.s3", count)
    return counted


# ---- layout, checksums, loading --------------------------------------------------------------


def test_versions_lie_under_the_prefix_as_on_disk_with_the_sha256_of_every_file(
    s3_server: S3Server, s3_url: str
) -> None:
    registry = s3_registry(s3_url)
    numbers = [publish_tagged(registry, "demo", f"v{i}") for i in range(3)]

    assert numbers == [1, 2, 3] and registry.versions("demo") == [1, 2, 3]
    assert registry.list_models() == ["demo"]
    files = [f"demo/versions/{n}/{f}" for n in numbers for f in (MANIFEST_FILE, WEIGHTS_FILE, REPORT_FILE)]
    claims = [f"demo/.staging/{n}.claim" for n in numbers]
    assert s3_server.keys(s3_url) == sorted(files + claims)
    for version in numbers:
        assert check_version(registry, "demo", version, 1000) == f"v{version - 1}"
    assert registry.version_location("demo", 2) == f"{s3_url}/demo/versions/2"


def test_a_published_network_loads_back_and_a_corrupted_object_is_refused_by_its_checksum(
    s3_server: S3Server, s3_url: str
) -> None:
    registry = s3_registry(s3_url)
    version = publish_network(registry, "demo")
    loaded = load_predictor(registry, "demo", version, torch.device("cpu"))
    key = f"demo/versions/{version}/{WEIGHTS_FILE}"
    assert weights_bytes(loaded.predictor.network) == s3_server.get(s3_url, key)

    payload = bytearray(s3_server.get(s3_url, key))
    payload[len(payload) // 2] ^= 0x01
    s3_server.put(s3_url, key, bytes(payload))

    with pytest.raises(RegistryCorrupt, match=rf"'demo' version {version}: {WEIGHTS_FILE} fails its sha256"):
        load_predictor(s3_registry(s3_url), "demo", version, torch.device("cpu"))


@pytest.mark.parametrize("content", [b"{not json", b'{"name": "demo", "version": 1}', b""])
def test_an_invalid_manifest_is_refused_naming_its_url(s3_server: S3Server, s3_url: str, content: bytes) -> None:
    registry = s3_registry(s3_url)
    version = publish_network(registry, "demo")
    s3_server.put(s3_url, f"demo/versions/{version}/{MANIFEST_FILE}", content)

    with pytest.raises(RegistryCorrupt, match=r"manifest\.json is invalid") as refused:
        registry.manifest("demo", version)
    assert f"{s3_url}/demo/versions/{version}/{MANIFEST_FILE}" in str(refused.value)
    assert "validation error" not in str(refused.value)


def test_a_version_copied_under_another_name_or_number_is_refused_naming_its_url(
    s3_server: S3Server, s3_url: str
) -> None:
    registry = s3_registry(s3_url)
    publish_network(registry, "demo")
    s3_server.copy_folder(s3_url, "demo/versions/1", "demo/versions/5")
    s3_server.copy_folder(s3_url, "demo", "copy")

    for name, version in (("demo", 5), ("copy", 1)):
        with pytest.raises(RegistryCorrupt, match="describes model 'demo' version 1") as refused:
            load_predictor(registry, name, version, torch.device("cpu"))
        assert f"{s3_url}/{name}/versions/{version}" in str(refused.value)
    assert registry.manifest("demo", 1).version == 1


@pytest.mark.parametrize("folder", ["01", "0", "+1", "1 "])
def test_folders_not_named_as_publish_names_them_are_not_versions(
    s3_server: S3Server, s3_url: str, folder: str
) -> None:
    registry = s3_registry(s3_url)
    publish_network(registry, "demo")
    s3_server.copy_folder(s3_url, "demo/versions/1", f"demo/versions/{folder}")
    assert registry.versions("demo") == [1]


def test_a_folder_copied_in_by_a_tool_is_never_written_into(s3_server: S3Server, s3_url: str) -> None:
    """`aws s3 sync models/ s3://...` brings versions without claims: publish goes above them."""
    registry = s3_registry(s3_url)
    publish_tagged(registry, "demo", "v1")
    s3_server.copy_folder(s3_url, "demo/versions/1", "demo/versions/2")  # as a sync would, no claim
    s3_server.put(s3_url, "demo/versions/3/model.safetensors", b"half of a synced version")

    assert publish_tagged(registry, "demo", "next") == 4
    assert s3_server.get(s3_url, "demo/versions/3/model.safetensors") == b"half of a synced version"


def test_a_number_another_writer_claims_first_is_left_to_it(
    s3_server: S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rival claims the number this publisher picked between its listing and its claim (the
    race of two trainers, made certain): the create-only claim loses, and the publisher moves
    on to the next number without writing into the rival's folder."""
    registry = s3_registry(s3_url)
    publish_tagged(registry, "demo", "v1")
    real_put = S3Storage._put
    rivals: list[str] = []

    def rival_first(self: S3Storage, key: str, payload: bytes, **condition: str) -> bool:
        if key.endswith(".claim") and not rivals:
            rivals.append(key)
            s3_server.put(s3_url, key, b"rival-token")
        return real_put(self, key, payload, **condition)

    monkeypatch.setattr(S3Storage, "_put", rival_first)
    assert publish_tagged(registry, "demo", "mine") == 3
    assert rivals == ["demo/.staging/2.claim"]
    assert s3_server.get(s3_url, rivals[0]) == b"rival-token", "the rival's claim was overwritten"
    assert not [key for key in s3_server.keys(s3_url) if key.startswith("demo/versions/2/")]
    assert check_version(registry, "demo", 3, 1000) == "mine"


# ---- aliases -----------------------------------------------------------------------------


def test_aliases_move_by_compare_and_swap_and_refuse_a_stale_expectation(s3_server: S3Server, s3_url: str) -> None:
    registry = s3_registry(s3_url)
    for i in range(3):
        publish_tagged(registry, "demo", f"v{i}")
    registry.set_alias("demo", PRODUCTION, 1, expected=None)
    registry.set_alias("demo", "staging", 2)
    registry.set_alias("demo", PRODUCTION, 3, expected=1)

    assert json.loads(s3_server.get(s3_url, "demo/aliases.json")) == {"production": 3, "staging": 2}
    assert registry.resolve("demo") == 3 and registry.resolve("demo", alias="staging") == 2
    with pytest.raises(AliasMoved, match="points at 3 now, not 1"):
        registry.set_alias("demo", PRODUCTION, 2, expected=1)
    with pytest.raises(AliasMoved):
        registry.set_alias("demo", "staging", 1, expected=None)
    with pytest.raises(VersionNotFound, match="no version 9"):
        registry.set_alias("demo", PRODUCTION, 9)
    assert registry.aliases("demo") == {"production": 3, "staging": 2}


@pytest.mark.parametrize(
    "content",
    [
        "{broken",
        '{"production": true}',
        '{"production": 0}',
        '{"../up": 1}',
        "[" * 100_000,
        '{"production": 1, "pad": "' + "x" * (2 << 20) + '"}',
    ],
    ids=["torn", "bool", "zero", "path-alias", "deeply-nested", "over-1-MiB"],
)
def test_a_hostile_aliases_object_is_refused_as_corrupt_with_a_short_message(
    s3_server: S3Server, s3_url: str, content: str
) -> None:
    registry = s3_registry(s3_url)
    publish_tagged(registry, "demo", "v1")
    s3_server.put(s3_url, "demo/aliases.json", content.encode())

    with pytest.raises(RegistryCorrupt, match=r"model 'demo': aliases\.json") as refused:
        registry.aliases("demo")
    assert len(str(refused.value)) < 400
    with pytest.raises(RegistryCorrupt):  # and is not overwritten by a promotion that cannot read it
        registry.set_alias("demo", PRODUCTION, 1)
    assert s3_server.get(s3_url, "demo/aliases.json") == content.encode()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_two_concurrent_promoters_lose_no_update(s3_server: S3Server, tmp_path: Path, backend: str) -> None:
    """Each promoter (its own registry and connection) sets its own aliases, and both move one
    shared alias up by compare-and-swap: every alias lands, and the counter counts every move."""
    root = s3_server.new_bucket() if backend == "s3" else str(tmp_path / "registry")
    rounds = 5
    setup = open_registry(root)
    for i in range(2 * rounds + 1):
        publish_tagged(setup, "demo", f"v{i}", size=16)
    setup.set_alias("demo", "counter", 1)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def promote(index: int) -> None:
        registry = open_registry(root)
        try:
            start.wait()
            for step in range(rounds):
                registry.set_alias("demo", f"p{index}-{step}", 1 + step)
                while True:  # read, then move only if nobody moved it meanwhile
                    current = registry.aliases("demo")["counter"]
                    try:
                        registry.set_alias("demo", "counter", current + 1, expected=current)
                        break
                    except AliasMoved:
                        continue
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    aliases = open_registry(root).aliases("demo")
    assert aliases.pop("counter") == 1 + 2 * rounds, "a move of the counter was lost"
    assert aliases == {f"p{index}-{step}": 1 + step for index in range(2) for step in range(rounds)}


# ---- polling cost, identities, faults ----------------------------------------------------------


def test_a_scan_lists_and_reads_only_aliases_and_a_cached_manifest_costs_one_head(
    s3_server: S3Server, s3_url: str
) -> None:
    registry = s3_registry(s3_url)
    for name in ("alpha", "beta"):
        for i in range(3):
            publish_tagged(registry, name, f"{name}-{i}")
        registry.set_alias(name, PRODUCTION, 3)
    poller = s3_registry(s3_url)
    requests = count_requests(poller)

    scan = scan_registry(poller)
    assert {name: sorted(model.versions) for name, model in scan.models.items()} == {
        "alpha": [1, 2, 3],
        "beta": [1, 2, 3],
    }
    assert requests == {"ListObjectsV2": 3, "GetObject": 2}, "one listing per model and its aliases, no other reads"

    requests.clear()
    poller.manifest("alpha", 2)
    poller.manifest("alpha", 2)
    assert requests == {"HeadObject": 2, "GetObject": 1}, "the second read of an unchanged manifest is a HEAD"


def test_version_files_are_etags_that_change_when_an_object_is_rewritten(s3_server: S3Server, s3_url: str) -> None:
    registry = s3_registry(s3_url)
    version = publish_network(registry, "demo")
    whole = registry.version_files("demo", version)
    assert isinstance(whole.weights, ObjectIdentity) and whole.weights.size > 0
    key = f"demo/versions/{version}/{WEIGHTS_FILE}"
    payload = s3_server.get(s3_url, key)

    s3_server.put(s3_url, key, payload[:-1] + bytes([payload[-1] ^ 1]))
    rewritten = registry.version_files("demo", version)
    assert rewritten.weights != whole.weights and rewritten.manifest == whole.manifest
    s3_server.put(s3_url, key, payload)
    assert registry.version_files("demo", version) == whole, "the same bytes: the same ETag"


def test_a_missing_bucket_or_an_unreachable_endpoint_is_an_error_not_an_empty_registry(s3_server: S3Server) -> None:
    missing = s3_registry("s3://no-such-bucket-here/models")
    with pytest.raises(FileNotFoundError, match="NoSuchBucket"):
        missing.model_folders()
    assert missing.list_models() == []
    assert "cannot list the registry s3://no-such-bucket-here/models" in str(scan_registry(missing).error)

    unreachable = open_registry("s3://bucket/models", Settings(s3_endpoint_url="http://127.0.0.1:9"))
    with pytest.raises(OSError, match=r"127\.0\.0\.1:9"):
        unreachable.model_folders()
    with pytest.raises(InvalidSetting, match="is not s3://bucket/prefix"):
        open_registry("s3:///no-bucket")


def test_the_engine_serves_a_new_version_and_a_moved_alias_from_s3(s3_server: S3Server, s3_url: str) -> None:
    registry = s3_registry(s3_url)
    first = publish_network(registry, "demo")
    registry.set_alias("demo", PRODUCTION, first)

    async def scenario() -> None:
        engine = Engine(s3_registry(s3_url), Settings(registry=s3_url, device="cpu", reload_seconds=3600))
        await engine.start()
        try:
            assert engine.ready and engine.served_aliases("demo") == {PRODUCTION: first}
            second = publish_network(registry, "demo")
            registry.set_alias("demo", PRODUCTION, second)
            await engine.refresh()
            assert engine.served_aliases("demo") == {PRODUCTION: second}
            assert engine.health().problems == {}
        finally:
            await engine.stop()

    asyncio.run(scenario())


# ---- real processes: SIGKILL and racing writers ------------------------------------------


def partial_versions(s3_server: S3Server, url: str, name: str) -> set[int]:
    """Version folders with files but no manifest (invisible)."""
    folders: dict[int, set[str]] = {}
    for key in s3_server.keys(url):
        parts = key.split("/")
        if key.startswith(f"{name}/versions/") and len(parts) == 4:
            folders.setdefault(int(parts[2]), set()).add(parts[3])
    return {number for number, files in folders.items() if MANIFEST_FILE not in files}


def owner_of_a_partial(s3_server: S3Server, url: str, name: str, pids: list[int]) -> int | None:
    """A writer that is mid-upload now: its claim names it (pid-token)."""
    for number in partial_versions(s3_server, url, name):
        pid = int(s3_server.get(url, f"{name}/.staging/{number}.claim").partition(b"-")[0])
        if pid in pids:
            return pid
    return None


def settled_keys(s3_server: S3Server, url: str) -> list[str]:
    """The keys once no request of a killed writer is still landing: a request it had sent
    before its kill may be served after it. Bounded."""
    previous = s3_server.keys(url)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if (current := s3_server.keys(url)) == previous:
            return current
        previous = current
    raise AssertionError("the bucket kept changing after every writer was killed")


def test_ten_sigkilled_writers_leave_no_visible_half_version(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    registry, size, count = s3_registry(s3_url), 256 << 10, 10
    publish_tagged(registry, "demo", "before", size)
    writers = Writers(s3_url, "demo", tmp_path / "work", count=count, versions=0, size=size)  # type: ignore[arg-type]
    rng = random.Random(0)
    try:
        writers.go()
        # first one mid-upload (its claimed folder has files but no manifest yet), then the
        # others at random moments: before, during or after one of their publishes
        first = wait_for(lambda: owner_of_a_partial(s3_server, s3_url, "demo", writers.pids), "a writer mid-upload")
        kill_quietly(first)
        for pid in [pid for pid in writers.pids if pid != first]:
            time.sleep(rng.uniform(0.0, 0.15))
            kill_quietly(pid)
        statuses = writers.finish()
    finally:
        writers.stop()
    settled_keys(s3_server, s3_url)

    assert statuses == [-signal.SIGKILL] * count
    visible = registry.versions("demo")
    tags = [check_version(registry, "demo", version, size) for version in visible]  # each one complete
    assert tags[0] == "before" and len(tags) > 1, "the writers published nothing before their kills"
    partial = partial_versions(s3_server, s3_url, "demo")
    assert partial, "no writer was killed mid-upload"
    claims = {int(key.rpartition("/")[2].removesuffix(".claim")) for key in s3_server.keys(s3_url) if ".claim" in key}
    assert set(visible) | partial <= claims, "a version written without claiming its number"

    # the next publisher sweeps the unfinished uploads (grace period 0 here) and lands above them
    sweeper = Registry(S3Storage(s3_url, endpoint_url=s3_server.endpoint_url, stale_upload_s=0))
    latest = publish_tagged(sweeper, "demo", "after", size)
    assert partial_versions(s3_server, s3_url, "demo") == set()
    assert latest == max(claims) + 1
    assert sweeper.versions("demo") == [*visible, latest]
    assert check_version(sweeper, "demo", latest, size) == "after"


def test_two_racing_writers_get_distinct_complete_versions(s3_server: S3Server, s3_url: str, tmp_path: Path) -> None:
    registry, size, per_writer = s3_registry(s3_url), 64 << 10, 5
    writers = Writers(s3_url, "demo", tmp_path / "work", count=2, versions=per_writer, size=size)  # type: ignore[arg-type]
    checked: dict[int, str] = {}
    try:
        writers.go()
        while writers.process.poll() is None:  # a reader watching: anything visible is complete
            for version in set(registry.versions("demo")) - set(checked):
                checked[version] = check_version(registry, "demo", version, size)
        statuses = writers.finish()
    finally:
        writers.stop()

    assert statuses == [0, 0]
    got = [writers.published(0), writers.published(1)]
    assert len(got[0]) == len(got[1]) == per_writer
    assert not set(got[0]) & set(got[1]), "two writers were given the same version"
    assert registry.versions("demo") == list(range(1, 2 * per_writer + 1))
    tags = {version: check_version(registry, "demo", version, size) for version in registry.versions("demo")}
    for index, versions in enumerate(got):
        assert [tags[v] for v in versions] == [f"writer-{index}-{s}" for s in range(per_writer)]
    assert all(tags[v] == tag for v, tag in checked.items())
