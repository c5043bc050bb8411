"""The registry on real files: numbered versions with checksums, atomic aliases, safe names,
refusal of corrupt versions, and no half or clobbered version under SIGKILL or racing writers."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from forecast.errors import InvalidName, ModelNotFound, RegistryCorrupt, VersionNotFound
from forecast.registry.manifest import MANIFEST_FILE, REPORT_FILE, WEIGHTS_FILE
from forecast.registry.store import PRODUCTION, Registry, check_name
from forecast.registry.weights import load_predictor, weights_bytes
from tests.support.registries import Writers, kill_quietly, publish_network, publish_tagged, wait_for
from tests.support.registry_writer import SMALL_NETWORK, check_version

# ---- versions and checksums ----------------------------------------------------------------


def test_publish_numbers_versions_from_one_with_the_sha256_of_every_file(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    numbers = [publish_tagged(registry, "demo", f"v{i}") for i in range(3)]

    assert numbers == [1, 2, 3]
    assert registry.versions("demo") == [1, 2, 3]
    assert registry.list_models() == ["demo"]
    for version in numbers:
        folder = tmp_path / "demo" / "versions" / str(version)
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        assert manifest["version"] == version
        written = {p.name for p in folder.iterdir()} - {MANIFEST_FILE}
        assert set(manifest["files"]) == written == {WEIGHTS_FILE, REPORT_FILE}
        for filename, digest in manifest["files"].items():
            assert hashlib.sha256((folder / filename).read_bytes()).hexdigest() == digest
    assert not list((tmp_path / "demo" / ".staging").iterdir()), "a finished publish leaves no staging folder"


def test_a_published_network_loads_back_with_its_weights(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = publish_network(registry, "demo")

    loaded = load_predictor(registry, "demo", version, torch.device("cpu"))
    manifest, predictor = loaded.manifest, loaded.predictor

    assert manifest.network == SMALL_NETWORK
    stored = (tmp_path / "demo" / "versions" / "1" / WEIGHTS_FILE).read_bytes()
    assert weights_bytes(predictor.network) == stored


def test_a_flipped_byte_in_the_weights_is_refused_on_load(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = publish_network(registry, "demo")
    weights = tmp_path / "demo" / "versions" / str(version) / WEIGHTS_FILE
    payload = bytearray(weights.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    weights.write_bytes(bytes(payload))

    with pytest.raises(RegistryCorrupt) as refused:
        load_predictor(registry, "demo", version, torch.device("cpu"))

    message = str(refused.value)
    assert "'demo'" in message and f"version {version}" in message
    assert WEIGHTS_FILE in message and "sha256" in message


def test_a_missing_weights_file_is_refused_on_load(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = publish_network(registry, "demo")
    (tmp_path / "demo" / "versions" / str(version) / WEIGHTS_FILE).unlink()

    with pytest.raises(RegistryCorrupt, match=rf"'demo' version {version}: cannot read {WEIGHTS_FILE}"):
        load_predictor(registry, "demo", version, torch.device("cpu"))


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"name": "demo", "version": 1}', b"[]", b""],
    ids=["not-json", "missing-fields", "wrong-type", "empty"],
)
def test_an_invalid_manifest_is_refused(tmp_path: Path, content: bytes) -> None:
    registry = Registry(tmp_path)
    version = publish_network(registry, "demo")
    (tmp_path / "demo" / "versions" / str(version) / MANIFEST_FILE).write_bytes(content)

    with pytest.raises(
        RegistryCorrupt, match=rf"model 'demo' version {version}: .*manifest.json is invalid"
    ) as refused:
        load_predictor(registry, "demo", version, torch.device("cpu"))
    assert str(tmp_path / "demo" / "versions" / str(version)) in str(refused.value), "the folder is named"
    assert "validation error" not in str(refused.value), "pydantic's header line instead of the problem"


# ---- names, aliases, resolution -----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../x", "..", ".", "a/b", "/abs", "a\\b", "", " ", "a b", "a\n", ".hidden", "-dash", "a..b", "x" * 65, "é"],
)
def test_check_name_refuses_names_that_could_leave_the_registry(name: str) -> None:
    with pytest.raises(InvalidName, match="invalid model name"):
        check_name(name)


@pytest.mark.parametrize("name", ["demo", "ett-lstm", "m4.weekly_v2", "A1", "x" * 64])
def test_check_name_accepts_ordinary_names(name: str) -> None:
    assert check_name(name) == name


def test_a_bad_name_writes_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")

    with pytest.raises(InvalidName):
        publish_tagged(registry, "../evil", "x")

    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "registry").exists()


def test_aliases_point_at_versions_and_move_by_replacing_the_file(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for i in range(3):
        publish_tagged(registry, "demo", f"v{i}")
    registry.set_alias("demo", PRODUCTION, 1)
    registry.set_alias("demo", "staging", 2)
    aliases_file = tmp_path / "demo" / "aliases.json"
    before = aliases_file.stat().st_ino

    registry.set_alias("demo", PRODUCTION, 3)

    assert json.loads(aliases_file.read_text()) == {"production": 3, "staging": 2}
    assert aliases_file.stat().st_ino != before, "rewritten in place instead of replaced"
    assert [p.name for p in (tmp_path / "demo").iterdir() if p.name.startswith(".aliases")] == []
    assert registry.resolve("demo") == 3
    assert registry.resolve("demo", alias="staging") == 2


def test_readers_never_see_a_torn_aliases_file(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for i in range(2):
        publish_tagged(registry, "demo", f"v{i}")
    registry.set_alias("demo", PRODUCTION, 1)
    seen: list[int] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def read_until_done() -> None:
        reader = Registry(tmp_path)
        while not done.is_set():
            try:
                seen.append(reader.aliases("demo")[PRODUCTION])
            except BaseException as exc:
                failures.append(exc)
                return

    thread = threading.Thread(target=read_until_done)
    thread.start()
    try:
        for i in range(60):
            registry.set_alias("demo", PRODUCTION, 1 + i % 2)
    finally:
        done.set()
        thread.join()

    assert failures == []
    assert seen and set(seen) <= {1, 2}


def test_set_alias_refuses_a_missing_version_or_a_bad_alias(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    publish_tagged(registry, "demo", "v1")

    with pytest.raises(VersionNotFound, match="no version 7"):
        registry.set_alias("demo", PRODUCTION, 7)
    with pytest.raises(InvalidName, match="invalid alias"):
        registry.set_alias("demo", "../prod", 1)
    assert registry.aliases("demo") == {}


def test_resolve_names_what_is_missing(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    publish_tagged(registry, "demo", "v1")
    publish_tagged(registry, "demo", "v2")

    with pytest.raises(ModelNotFound, match="'nope' is not in the registry; known models: \\['demo'\\]"):
        registry.resolve("nope")
    with pytest.raises(VersionNotFound, match="'demo' has no version 9; versions: \\[1, 2\\]"):
        registry.resolve("demo", version=9)
    with pytest.raises(VersionNotFound, match="'demo' has no alias 'production'"):
        registry.resolve("demo")
    registry.set_alias("demo", PRODUCTION, 2)
    with pytest.raises(VersionNotFound, match="'demo' has no alias 'canary'; aliases: \\['production'\\]"):
        registry.resolve("demo", alias="canary")
    with pytest.raises(InvalidName):
        registry.resolve("demo", alias="../production")
    assert registry.resolve("demo") == 2
    assert registry.resolve("demo", version=1) == 1


@pytest.mark.parametrize("content", ["{broken", '["production"]', '{"production": "one"}', "7"])
def test_an_unreadable_aliases_file_is_reported_as_corrupt(tmp_path: Path, content: str) -> None:
    registry = Registry(tmp_path)
    publish_tagged(registry, "demo", "v1")
    (tmp_path / "demo" / "aliases.json").write_text(content)

    with pytest.raises(RegistryCorrupt, match=r"model 'demo': aliases\.json"):
        registry.resolve("demo")


# ---- real processes: SIGKILL and racing writers ------------------------------------------


def assert_only_complete_versions(registry: Registry, name: str, size: int) -> list[str]:
    """Every entry under versions/ is a complete, self-consistent version; returns their tags."""
    versions_dir = registry.model_dir(name) / "versions"
    entries = sorted(p.name for p in versions_dir.iterdir())
    assert all(entry.isdigit() for entry in entries), entries
    assert sorted(map(int, entries)) == registry.versions(name), "a version folder without its manifest"
    return [check_version(registry, name, version, size) for version in registry.versions(name)]


def test_sigkilled_writers_leave_no_half_version(tmp_path: Path) -> None:
    registry, size = Registry(tmp_path / "registry"), 4 << 20  # 4 MiB: writing takes a while
    publish_tagged(registry, "demo", "before", size)
    writers = Writers(registry.root, "demo", tmp_path / "work", count=4, versions=0, size=size)
    staging = registry.model_dir("demo") / ".staging"
    rng = random.Random(0)
    try:
        writers.go()
        # four different moments: mid-write of its first version, just after a version landed,
        # after a random short delay, and at once
        first = writers.pids[0]
        wait_for(lambda: any(p.name.startswith(f"{first}-") for p in staging.iterdir()), "a staging folder")
        kill_quietly(first)
        wait_for(lambda: writers.published(1), "a published version")
        time.sleep(rng.uniform(0.0, 0.02))
        kill_quietly(writers.pids[1])
        time.sleep(rng.uniform(0.0, 0.2))
        kill_quietly(writers.pids[2])
        kill_quietly(writers.pids[3])
        statuses = writers.finish()
    finally:
        writers.stop()

    assert statuses == [-signal.SIGKILL] * 4
    tags = assert_only_complete_versions(registry, "demo", size)
    assert tags[0] == "before"
    assert any(staging.iterdir()), "expected the writer killed mid-write to leave its staging folder"
    assert registry.list_models() == ["demo"]
    # the registry keeps working: the next version lands after every visible one
    latest = publish_tagged(registry, "demo", "after", size)
    assert latest == max(registry.versions("demo")) and latest > len(tags)
    assert check_version(registry, "demo", latest, size) == "after"


def test_two_racing_writers_get_distinct_complete_versions(tmp_path: Path) -> None:
    registry, size, per_writer = Registry(tmp_path / "registry"), 64 << 10, 10
    writers = Writers(registry.root, "demo", tmp_path / "work", count=2, versions=per_writer, size=size)
    checked: dict[int, str] = {}
    try:
        writers.go()
        # a reader watching while they race: anything visible is already complete
        while writers.process.poll() is None:
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
    tags = assert_only_complete_versions(registry, "demo", size)
    for index, versions in enumerate(got):
        # each writer's versions hold that writer's files, in the order it wrote them
        assert [tags[v - 1] for v in versions] == [f"writer-{index}-{s}" for s in range(per_writer)]
    assert all(tags[v - 1] == tag for v, tag in checked.items())


# ---- folders that lie, hostile files --------------------------------------------------------


def test_a_version_folder_copied_under_another_name_or_number_is_refused_naming_the_folder(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    publish_network(registry, "demo")
    shutil.copytree(registry.version_dir("demo", 1), registry.version_dir("demo", 5))
    shutil.copytree(registry.model_dir("demo"), registry.model_dir("copy"))

    for name, version in (("demo", 5), ("copy", 1)):
        with pytest.raises(RegistryCorrupt, match="describes model 'demo' version 1") as refused:
            load_predictor(registry, name, version, torch.device("cpu"))
        assert str(registry.version_dir(name, version)) in str(refused.value)
    assert registry.manifest("demo", 1).version == 1, "the original still loads"


@pytest.mark.parametrize(
    "folder", ["01", "0", "\u0661", "1 ", "+1"], ids=["leading-zero", "zero", "arabic-one", "space", "plus"]
)
def test_version_folders_not_named_as_publish_names_them_are_not_versions(tmp_path: Path, folder: str) -> None:
    """int() reads all of these as a version number, which another folder already answers for."""
    registry = Registry(tmp_path)
    publish_network(registry, "demo")
    shutil.copytree(registry.version_dir("demo", 1), registry.model_dir("demo") / "versions" / folder)

    assert registry.versions("demo") == [1]


@pytest.mark.parametrize(
    "content",
    [
        '{"production": true}',
        '{"production": 0}',
        '{"production": -1}',
        '{"../up": 1}',
        '{"": 1}',
        "[" * 100_000,
        '{"production": 1, "pad": "' + "x" * (2 << 20) + '"}',
    ],
    ids=["bool", "zero", "negative", "path-alias", "empty-alias", "deeply-nested", "over-1-MiB"],
)
def test_a_hostile_aliases_file_is_refused_as_corrupt_with_a_short_message(tmp_path: Path, content: str) -> None:
    registry = Registry(tmp_path)
    publish_tagged(registry, "demo", "v1")
    (tmp_path / "demo" / "aliases.json").write_text(content)

    with pytest.raises(RegistryCorrupt, match=r"model 'demo': aliases\.json") as refused:
        registry.aliases("demo")
    assert len(str(refused.value)) < 400


def test_a_fifo_in_place_of_aliases_json_is_refused_without_blocking(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    publish_tagged(registry, "demo", "v1")
    os.mkfifo(tmp_path / "demo" / "aliases.json")
    started = time.monotonic()

    with pytest.raises(RegistryCorrupt, match="not a regular file"):
        registry.aliases("demo")
    assert time.monotonic() - started < 5.0


def test_no_aliases_file_reads_as_none_and_an_empty_one_as_no_aliases(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    publish_tagged(registry, "demo", "v1")
    assert registry.read_aliases("demo") is None and registry.aliases("demo") == {}
    (tmp_path / "demo" / "aliases.json").write_text("{}")
    assert registry.read_aliases("demo") == {}


def test_an_unlistable_root_raises_instead_of_reading_as_empty(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    publish_tagged(registry, "demo", "v1")
    assert registry.model_folders() == ["demo"]
    (tmp_path / "registry").rename(tmp_path / "away")

    with pytest.raises(OSError):
        registry.model_folders()
    assert registry.list_models() == []  # the listing's reading: nothing there now


def test_version_files_change_when_a_file_is_replaced_or_arrives(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    version = publish_network(registry, "demo")
    weights = registry.version_dir("demo", version) / WEIGHTS_FILE
    whole = registry.version_files("demo", version)
    payload = weights.read_bytes()

    weights.unlink()
    missing = registry.version_files("demo", version)
    assert missing.weights is None and missing.manifest == whole.manifest
    weights.write_bytes(payload)
    assert registry.version_files("demo", version) not in (missing, whole)


def test_a_version_folder_linked_out_of_the_registry_is_not_read(tmp_path: Path) -> None:
    """A symlink may point anywhere: what lies outside the registry is never served from it, and
    a link inside it still is."""
    registry = Registry(tmp_path / "registry")
    publish_network(registry, "linked")
    publish_network(registry, "linked")
    versions = tmp_path / "registry" / "linked" / "versions"
    outside = tmp_path / "outside"
    shutil.move(versions / "2", outside)
    (versions / "2").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RegistryCorrupt, match="outside the registry"):
        registry.manifest("linked", 2)
    inside = tmp_path / "registry" / "linked" / "elsewhere"
    shutil.move(versions / "1", inside)
    (versions / "1").symlink_to(inside, target_is_directory=True)
    assert registry.manifest("linked", 1).version == 1
