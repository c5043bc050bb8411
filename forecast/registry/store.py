"""The model registry: versioned, append-only, atomic, on a local folder or on S3.

    <root>/<name>/versions/<N>/manifest.json | model.safetensors | report.json
    <root>/<name>/aliases.json

The root is a path or s3://bucket/prefix, with the same layout under it. This module holds the
registry's rules, written once: safe names, version numbers, manifests checked against their
folder, the sha256 of every file, the manifest cache (names, keys and aliases.json's checks are
forecast/registry/layout.py's). The
storage (forecast/registry/storage/) keeps the guarantees: a version is invisible until
complete, a killed writer leaves no half version, two writers never share a number, and an
alias update is never lost.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import json
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from forecast.errors import AliasMoved, ModelNotFound, RegistryCorrupt, VersionNotFound
from forecast.registry.layout import (
    NAME_PATTERN,
    PRODUCTION,
    VERSION_PATTERN,
    aliased_version,
    aliases_key,
    check_name,
    parse_aliases,
    version_key,
)
from forecast.registry.manifest import MANIFEST_FILE, WEIGHTS_FILE, Manifest
from forecast.registry.storage import FileIdentity, Identity, LocalStorage, ObjectIdentity, Storage, open_storage
from forecast.registry.storage.local import file_identity, read_regular_file
from forecast.settings import Settings, get_settings

__all__ = [
    "ANY_VERSION",
    "PRODUCTION",
    "FileIdentity",
    "ObjectIdentity",
    "Registry",
    "VersionFiles",
    "aliased_version",
    "check_name",
    "file_identity",
    "open_registry",
    "read_regular_file",
    "sha256_bytes",
]

logger = logging.getLogger(__name__)

# aliases.json is a handful of names; a manifest, a few kilobytes. Bounds keep a hostile file
# (a FIFO, /dev/zero behind a symlink, gigabytes of JSON) from hanging or filling the server.
_MAX_ALIASES_BYTES = 1 << 20
_MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class VersionFiles:
    """The identity of a version's manifest and weights (None: absent or unreadable). A load that
    failed is retried at once when this changes, and not re-hashed while it stays the same."""

    manifest: Identity | None
    weights: Identity | None


def _first_problem(exc: Exception) -> str:
    """pydantic's first error as `location: message`, not its header line ("1 validation error")."""
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"])
        return f"{location}: {error['msg']}"[:300] if location else str(error["msg"])[:300]
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


@dataclass(slots=True)
class _CachedManifest:
    identity: Identity
    manifest: Manifest


def os_error_text(exc: OSError) -> str:
    """An OSError as one line: its errno's name, its message, and the path when it has one."""
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno is not None else type(exc).__name__
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p)
    return f"{name}: {exc.strerror or exc}" + (f", {paths}" if paths else "")


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class _Unset(enum.Enum):
    ANY = "any"


# set_alias's `expected` when the alias may point anywhere (or nowhere) before the move.
ANY_VERSION = _Unset.ANY


def open_registry(root: str | Path, settings: Settings | None = None) -> Registry:
    """The registry at a path or an s3://bucket/prefix URL, with the S3 endpoint of `settings`."""
    settings = settings or get_settings()
    return Registry(open_storage(root, s3_endpoint_url=settings.s3_endpoint_url))


class Registry:
    """The registry's rules over a `Storage`: a local folder (a path) or an object store."""

    def __init__(self, root: str | Path | Storage) -> None:
        self.storage = root if isinstance(root, Storage) else open_storage(root)
        self._manifests: dict[tuple[str, int], _CachedManifest] = {}

    @property
    def location(self) -> str:
        """The root as a user names it (a path or s3://bucket/prefix), for messages."""
        return self.storage.location

    @property
    def root(self) -> Path:
        """The root folder of a registry on disk (tools and tests that touch its files)."""
        if not isinstance(self.storage, LocalStorage):
            raise TypeError(f"the registry {self.location} is not a local folder")
        return self.storage.root

    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_dir(self, name: str, version: int) -> Path:
        return self.model_dir(name) / "versions" / str(version)

    def version_location(self, name: str, version: int) -> str:
        """A version's folder (a path, or its s3:// URL), for messages."""
        return self.storage.where(version_key(name, version))

    # ---- reading -------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        try:
            names = self.model_folders()
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(name for name in names if self.versions(name))

    def model_folders(self) -> list[str]:
        """The folders under the root with a model's name, versions or not. Raises OSError when
        the root cannot be listed (missing, unmounted, unreadable, no such bucket), which a
        caller must tell apart from an empty registry."""
        return sorted(name for name in self.storage.folders("") if NAME_PATTERN.fullmatch(name))

    def versions(self, name: str) -> list[int]:
        try:
            folders = self.storage.folders_holding(f"{check_name(name)}/versions", MANIFEST_FILE)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(int(folder) for folder in folders if VERSION_PATTERN.fullmatch(folder))

    def aliases(self, name: str) -> dict[str, int]:
        return self.read_aliases(name) or {}

    def read_aliases(self, name: str) -> dict[str, int] | None:
        """aliases.json, checked: None when there is none; RegistryCorrupt when it is torn,
        hostile or unreadable (alias names and version numbers as set_alias writes them)."""
        try:
            payload = self.storage.read(aliases_key(name), _MAX_ALIASES_BYTES).payload
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryCorrupt(f"model {name!r}: aliases.json is unreadable ({exc})") from exc
        return parse_aliases(name, payload)

    def version_files(self, name: str, version: int) -> VersionFiles:
        key = version_key(name, version)
        return VersionFiles(
            manifest=self._identity(f"{key}/{MANIFEST_FILE}"), weights=self._identity(f"{key}/{WEIGHTS_FILE}")
        )

    def _identity(self, key: str) -> Identity | None:
        try:
            return self.storage.identity(key)
        except OSError:
            return None

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

    def file_size(self, name: str, version: int, filename: str) -> int | None:
        """A version's file's size without reading it (a stat, a HEAD); None when it cannot tell."""
        try:
            identity = self.storage.identity(f"{version_key(name, version)}/{filename}")
        except OSError:
            return None
        return None if identity is None else identity.size

    def read_file(
        self, name: str, version: int, filename: str, manifest: Manifest, limit_bytes: int | None = None
    ) -> bytes:
        """A version's file, refused unless its sha256 matches the manifest's (and, with
        `limit_bytes`, unless it is at most that large: a file grown since it was sized is not
        read whole)."""
        expected = manifest.files.get(filename)
        if expected is None:
            raise RegistryCorrupt(f"model {name!r} version {version}: {filename} is not listed in the manifest")
        try:
            payload = self.storage.read(f"{version_key(name, version)}/{filename}", limit_bytes).payload
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
        and the API lists every manifest each time a dashboard polls): a stat on disk, a HEAD on
        S3. A manifest that names another model or version than its folder is refused: a copied
        or renamed folder would otherwise answer as the original."""
        key = f"{version_key(name, version)}/{MANIFEST_FILE}"
        where = self.storage.where(key)
        try:
            identity = self.storage.identity(key)
            if identity is None:
                raise FileNotFoundError(where)
            cached = self._manifests.get((name, version))
            if cached is not None and cached.identity == identity:
                return cached.manifest
            blob = self.storage.read(key, _MAX_MANIFEST_BYTES)
            manifest = Manifest.model_validate_json(blob.payload)
        except FileNotFoundError as exc:
            raise VersionNotFound(f"model {name!r} has no version {version}") from exc
        except (OSError, ValidationError, ValueError) as exc:
            raise RegistryCorrupt(
                f"model {name!r} version {version}: {where} is invalid ({_first_problem(exc)})"
            ) from exc
        if (manifest.name, manifest.version) != (name, version):
            raise RegistryCorrupt(
                f"model {name!r} version {version}: the manifest in {self.version_location(name, version)} describes "
                f"model {manifest.name!r} version {manifest.version} (a copied or renamed folder); publish it under "
                "its own name and number"
            )
        self._manifests[(name, version)] = _CachedManifest(blob.identity, manifest)
        return manifest

    # ---- writing -------------------------------------------------------------------------

    def locked(self, name: str) -> AbstractContextManager[None]:
        """Exclusive among one model's writers on disk (re-entrant). On S3 there is no lock:
        publish claims numbers create-only and set_alias is a compare-and-swap, so writes stay
        apart without one, and `set_alias(expected=...)` guards a read-then-move."""
        return self.storage.locked(check_name(name))

    def publish(self, name: str, files: dict[str, bytes], draft: Manifest) -> Manifest:
        """Write a new version atomically and return its manifest, which names the version
        number it finally landed as and the sha256 of every file."""
        parent = f"{check_name(name)}/versions"
        digests = {filename: sha256_bytes(payload) for filename, payload in files.items()}
        landed: dict[int, Manifest] = {}

        def manifest_for(number: int) -> bytes:
            landed[number] = draft.model_copy(update={"version": number, "files": digests})
            return landed[number].model_dump_json(indent=2).encode()

        try:
            number = self.storage.publish(parent, self._next_number(parent), files, MANIFEST_FILE, manifest_for)
        except OSError as exc:  # a full disk, a quota, a permission, a store gone away
            raise RegistryCorrupt(
                f"cannot write a new version of {name!r} to {self.storage.where(parent)} ({os_error_text(exc)}); "
                "nothing was published"
            ) from None
        return landed[number]

    def _next_number(self, parent: str) -> int:
        """One past every version folder, complete or not (a folder being written holds its number)."""
        try:
            numbers = [int(folder) for folder in self.storage.folders(parent) if VERSION_PATTERN.fullmatch(folder)]
        except (FileNotFoundError, NotADirectoryError):
            numbers = []
        return max(numbers, default=0) + 1

    def set_alias(self, name: str, alias: str, version: int, *, expected: int | _Unset | None = ANY_VERSION) -> None:
        """Point an alias at a version, atomically and without losing another writer's change to
        aliases.json. With `expected` (a version, or None for "no such alias yet") the move
        happens only if the alias still points there, else AliasMoved: the compare-and-swap a
        caller needs when it decided on what it read before."""
        check_name(alias, "alias")
        if version not in (known := self.versions(name)):
            raise VersionNotFound(f"model {name!r} has no version {version}; versions: {known}")

        def moved(current: bytes | None) -> bytes:
            aliases = (parse_aliases(name, current) if current is not None else None) or {}
            if expected is not ANY_VERSION and aliases.get(alias) != expected:
                raise AliasMoved(
                    f"model {name!r}: alias {alias!r} points at {aliases.get(alias)} now, not {expected}; not moved"
                )
            aliases[alias] = version
            return json.dumps(aliases, indent=2, sort_keys=True).encode()

        try:
            self.storage.update(aliases_key(name), moved, _MAX_ALIASES_BYTES)
        except OSError as exc:
            raise RegistryCorrupt(f"model {name!r}: cannot update aliases.json ({exc})") from exc
        logger.info("alias %s of %s -> version %d", alias, name, version)
