"""The one small interface the registry stores its files through: a local folder or an object
store, addressed by `/`-separated keys relative to the registry's root.

Each backend keeps the registry's guarantees with its own primitives (a rename on disk, a
create-only put on S3): `publish` makes a folder appear complete or not at all, and `update`
rewrites one small file without losing a concurrent writer's change. Everything above this
(names, manifests, checksums, aliases, caching, the checks of hostile files) is the registry's
and written once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What changes when a file on disk is replaced or rewritten."""

    inode: int
    mtime_ns: int
    size: int


@dataclass(frozen=True, slots=True)
class ObjectIdentity:
    """What changes when an object is replaced: S3 gives every write a new ETag."""

    etag: str
    size: int


Identity = FileIdentity | ObjectIdentity


@dataclass(frozen=True, slots=True)
class Blob:
    """A file's bytes and the identity of exactly what was read (not of a later write)."""

    payload: bytes
    identity: Identity


# Builds the commit marker's bytes for the number the folder finally lands at.
MarkerFor = Callable[[int], bytes]
# Turns a file's current bytes (None: absent) into its new bytes; may raise to refuse.
Change = Callable[[bytes | None], bytes]


class Storage(ABC):
    """Missing files and folders raise FileNotFoundError; anything else that cannot be read or
    listed raises another OSError, so that callers tell "not there" from "cannot tell"."""

    @property
    @abstractmethod
    def location(self) -> str:
        """The root as a user names it: a path, or s3://bucket/prefix."""

    @abstractmethod
    def where(self, key: str) -> str:
        """A key's full location, for messages."""

    @abstractmethod
    def folders(self, prefix: str) -> list[str]:
        """The names of the folders directly under `prefix` ("" is the root)."""

    @abstractmethod
    def folders_holding(self, prefix: str, filename: str) -> list[str]:
        """The names of the folders directly under `prefix` that hold `filename`."""

    @abstractmethod
    def files(self, prefix: str) -> list[str]:
        """The names of the entries directly in the folder `prefix`."""

    @abstractmethod
    def identity(self, key: str) -> Identity | None:
        """The identity of a file, None when there is none (cheap: a stat, a HEAD)."""

    @abstractmethod
    def read(self, key: str, limit_bytes: int | None = None) -> Blob:
        """A file's bytes; more than `limit_bytes` is an OSError, so a hostile file cannot fill
        the reader's memory."""

    @abstractmethod
    def publish(
        self, parent: str, first_number: int, files: dict[str, bytes], marker: str, marker_for: MarkerFor
    ) -> int:
        """Create the folder `<parent>/<N>` for the smallest free N >= `first_number`, holding
        `files` and `marker` (its bytes from `marker_for(N)`), and return N. Atomic: a reader
        that lists folders holding `marker` sees it complete or not at all; a writer killed at
        any moment leaves none; a folder another writer holds is never written into. Scratch
        space (staging folders, claims) lives in `.staging` beside `parent`."""

    @abstractmethod
    def update(self, key: str, change: Change, limit_bytes: int | None = None) -> None:
        """Replace a small file by `change(current bytes)`, atomically for readers and without
        losing a concurrent update (each update applies to the bytes the previous one left)."""

    @abstractmethod
    def locked(self, folder: str) -> AbstractContextManager[None]:
        """Exclusive among the writers of `folder` where the backend can lock (re-entrant in a
        thread); where it cannot, `update`'s compare-and-swap is what keeps writes apart."""
