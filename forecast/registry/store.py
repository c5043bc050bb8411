"""The model registry on disk: versioned, append-only, atomic.

    <root>/<name>/versions/<N>/manifest.json | model.safetensors | report.json
    <root>/<name>/aliases.json

A version is written into a private staging folder and renamed into place in one step, so it
is invisible until complete and a killed writer leaves no half version. Renaming onto an
existing non-empty folder fails, so two writers that pick the same N cannot clobber each
other: the loser takes N + 1. Aliases are rewritten through a temporary file and os.replace.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from forecast.errors import InvalidName, ModelNotFound, RegistryCorrupt, VersionNotFound
from forecast.registry.manifest import MANIFEST_FILE, WEIGHTS_FILE, Manifest

logger = logging.getLogger(__name__)

PRODUCTION = "production"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# A version folder's name is its number as publish writes it: "0003" or a non-ASCII digit would
# parse as another version's number and answer for it.
_VERSION = re.compile(r"^[1-9][0-9]{0,17}$")
# aliases.json is a handful of names; a manifest, a few kilobytes. Bounds keep a hostile file
# (a FIFO, /dev/zero behind a symlink, gigabytes of JSON) from hanging or filling the server.
_MAX_ALIASES_BYTES = 1 << 20
_MAX_MANIFEST_BYTES = 16 << 20
_STAGING = ".staging"
_STALE_STAGING_S = 24 * 3600


def check_name(name: str, what: str = "model name") -> str:
    """Names become path components: allow only a safe alphabet so none can leave the registry."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidName(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def aliased_version(name: str, aliases: dict[str, int], alias: str | None) -> int:
    """The version an alias points at; no alias means production. The registry resolves on
    what is on disk, the engine on what it serves: both by this rule."""
    wanted = check_name(alias, "alias") if alias is not None else PRODUCTION
    if wanted not in aliases:
        raise VersionNotFound(f"model {name!r} has no alias {wanted!r}; aliases: {sorted(aliases)}")
    return aliases[wanted]


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What changes when a file is replaced or rewritten."""

    inode: int
    mtime_ns: int
    size: int


@dataclass(frozen=True, slots=True)
class VersionFiles:
    """The identity of a version's manifest and weights (None: absent or unreadable). A load that
    failed is retried at once when this changes, and not re-hashed while it stays the same."""

    manifest: FileIdentity | None
    weights: FileIdentity | None


def file_identity(path: Path) -> FileIdentity | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return FileIdentity(status.st_ino, status.st_mtime_ns, status.st_size)


def read_regular_file(path: Path, limit_bytes: int | None = None) -> bytes:
    """A regular file's bytes. O_NONBLOCK so that a FIFO put in a file's place fails instead of
    blocking the reader for ever; anything but a regular file, or a file over the limit, is an
    OSError like an unreadable one."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if limit_bytes is not None and status.st_size > limit_bytes:
            raise OSError(errno.EFBIG, f"{status.st_size} bytes, more than the {limit_bytes} allowed", str(path))
        payload = handle.read() if limit_bytes is None else handle.read(limit_bytes + 1)
    if limit_bytes is not None and len(payload) > limit_bytes:
        raise OSError(errno.EFBIG, f"more than the {limit_bytes} bytes allowed", str(path))
    return payload


def _first_problem(exc: Exception) -> str:
    """pydantic's first error as `location: message`, not its header line ("1 validation error")."""
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"])
        return f"{location}: {error['msg']}"[:300] if location else str(error["msg"])[:300]
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


@dataclass(slots=True)
class _CachedManifest:
    identity: FileIdentity
    manifest: Manifest


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _write_synced(path: Path, payload: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._manifests: dict[tuple[str, int], _CachedManifest] = {}

    # ---- reading -------------------------------------------------------------------------

    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def list_models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(name for name in self.model_folders() if self.versions(name))

    def model_folders(self) -> list[str]:
        """The folders under the root with a model's name, versions or not. Raises OSError when
        the root cannot be listed (missing, unmounted, unreadable), which a caller must tell
        apart from an empty registry."""
        return sorted(p.name for p in self.root.iterdir() if _NAME.fullmatch(p.name) and p.is_dir())

    def versions(self, name: str) -> list[int]:
        folder = self.model_dir(name) / "versions"
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name) for p in folder.iterdir() if _VERSION.fullmatch(p.name) and (p / MANIFEST_FILE).is_file()
        )

    def aliases(self, name: str) -> dict[str, int]:
        return self.read_aliases(name) or {}

    def read_aliases(self, name: str) -> dict[str, int] | None:
        """aliases.json, checked: None when there is none; RegistryCorrupt when it is torn,
        hostile or unreadable (alias names and version numbers as set_alias writes them)."""
        path = self.model_dir(name) / "aliases.json"
        try:
            raw = json.loads(read_regular_file(path, _MAX_ALIASES_BYTES))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            raise RegistryCorrupt(f"model {name!r}: aliases.json is unreadable ({exc})") from exc
        if not isinstance(raw, dict) or not all(type(version) is int and version >= 1 for version in raw.values()):
            shown = repr(raw)[:200]
            raise RegistryCorrupt(f"model {name!r}: aliases.json must map alias names to version numbers; got {shown}")
        for alias in raw:
            if not _NAME.fullmatch(alias) or ".." in alias:
                raise RegistryCorrupt(f"model {name!r}: aliases.json holds an invalid alias name {alias[:80]!r}")
        return dict(raw)

    def version_files(self, name: str, version: int) -> VersionFiles:
        folder = self.version_dir(name, version)
        return VersionFiles(
            manifest=file_identity(folder / MANIFEST_FILE), weights=file_identity(folder / WEIGHTS_FILE)
        )

    def resolve(self, name: str, version: int | None = None, alias: str | None = None) -> int:
        """The version a request means: an explicit version, else the alias, else production."""
        known = self.versions(name)
        if not known:
            raise ModelNotFound(f"model {name!r} is not in the registry; known models: {self.list_models()}")
        if version is not None:
            if version not in known:
                raise VersionNotFound(f"model {name!r} has no version {version}; versions: {known}")
            return version
        return aliased_version(name, self.aliases(name), alias)

    def version_dir(self, name: str, version: int) -> Path:
        return self.model_dir(name) / "versions" / str(version)

    def read_file(self, name: str, version: int, filename: str, manifest: Manifest) -> bytes:
        """A version's file, refused unless its sha256 matches the manifest's."""
        expected = manifest.files.get(filename)
        if expected is None:
            raise RegistryCorrupt(f"model {name!r} version {version}: {filename} is not listed in the manifest")
        try:
            payload = read_regular_file(self.version_dir(name, version) / filename)
        except OSError as exc:
            raise RegistryCorrupt(f"model {name!r} version {version}: cannot read {filename} ({exc})") from exc
        if sha256_bytes(payload) != expected:
            raise RegistryCorrupt(
                f"model {name!r} version {version}: {filename} fails its sha256 check (file altered or corrupt); "
                "retrain or restore the version"
            )
        return payload

    def manifest(self, name: str, version: int) -> Manifest:
        """The validated manifest; cached while the file is unchanged (versions are immutable,
        and the API lists every manifest each time a dashboard polls). A manifest that names
        another model or version than its folder is refused: a copied or renamed folder would
        otherwise answer as the original."""
        folder = self.version_dir(name, version)
        path = folder / MANIFEST_FILE
        try:
            status = path.stat()
            identity = FileIdentity(status.st_ino, status.st_mtime_ns, status.st_size)
            cached = self._manifests.get((name, version))
            if cached is not None and cached.identity == identity:
                return cached.manifest
            manifest = Manifest.model_validate_json(read_regular_file(path, _MAX_MANIFEST_BYTES))
        except FileNotFoundError as exc:
            raise VersionNotFound(f"model {name!r} has no version {version}") from exc
        except (OSError, ValidationError, ValueError) as exc:
            raise RegistryCorrupt(
                f"model {name!r} version {version}: {path} is invalid ({_first_problem(exc)})"
            ) from exc
        if (manifest.name, manifest.version) != (name, version):
            raise RegistryCorrupt(
                f"model {name!r} version {version}: the manifest in {folder} describes model {manifest.name!r} "
                f"version {manifest.version} (a copied or renamed folder); publish it under its own name and number"
            )
        self._manifests[(name, version)] = _CachedManifest(identity, manifest)
        return manifest

    # ---- writing -------------------------------------------------------------------------

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """An exclusive lock on one model's aliases (read-modify-write of aliases.json)."""
        folder = self.model_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def publish(self, name: str, files: dict[str, bytes], draft: Manifest) -> Manifest:
        """Write a new version atomically and return its manifest, which names the version
        number it finally landed as and the sha256 of every file."""
        folder = self.model_dir(name)
        staging_root = folder / _STAGING
        (folder / "versions").mkdir(parents=True, exist_ok=True)
        staging_root.mkdir(exist_ok=True)
        self._sweep_stale_staging(staging_root)
        staging = staging_root / f"{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            digests = {}
            for filename, payload in files.items():
                _write_synced(staging / filename, payload)
                digests[filename] = sha256_bytes(payload)
            candidate = max(self._all_version_numbers(name), default=0) + 1
            while True:
                manifest = draft.model_copy(update={"version": candidate, "files": digests})
                _write_synced(staging / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
                _fsync_dir(staging)
                try:
                    os.rename(staging, folder / "versions" / str(candidate))
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    candidate += 1  # another writer took this number first
                    continue
                _fsync_dir(folder / "versions")
                return manifest
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _all_version_numbers(self, name: str) -> list[int]:
        folder = self.model_dir(name) / "versions"
        return [int(p.name) for p in folder.iterdir() if _VERSION.fullmatch(p.name)] if folder.is_dir() else []

    def _sweep_stale_staging(self, staging_root: Path) -> None:
        """Staging folders of writers killed long ago; never visible, only disk space."""
        cutoff = time.time() - _STALE_STAGING_S
        for leftover in staging_root.iterdir():
            try:
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                continue

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point an alias at a version; callers hold `locked(name)` when they read first."""
        check_name(alias, "alias")
        if version not in self.versions(name):
            raise VersionNotFound(f"model {name!r} has no version {version}; versions: {self.versions(name)}")
        aliases = self.aliases(name)
        aliases[alias] = version
        folder = self.model_dir(name)
        temporary = folder / f".aliases-{uuid.uuid4().hex}.json"
        _write_synced(temporary, json.dumps(aliases, indent=2, sort_keys=True).encode())
        os.replace(temporary, folder / "aliases.json")
        _fsync_dir(folder)
        logger.info("alias %s of %s -> version %d", alias, name, version)
