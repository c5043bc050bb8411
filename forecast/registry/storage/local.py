"""The registry in a local folder (the embedded default).

A folder is published by writing it in a private staging folder and renaming it into place in
one step: renaming onto an existing non-empty folder fails, so a writer that picked a taken
number takes the next. Small files are replaced through a temporary file and os.replace, under
an flock of the folder, so an update is never lost.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from forecast.registry.storage.base import Blob, Change, FileIdentity, Identity, MarkerFor, Storage

# Staging folders of writers killed this long ago are swept by the next publisher.
STALE_STAGING_S = 24 * 3600


def read_regular_file(path: Path, limit_bytes: int | None = None) -> bytes:
    """A regular file's bytes (see `read_blob`)."""
    return read_blob(path, limit_bytes).payload


def read_blob(path: Path, limit_bytes: int | None = None) -> Blob:
    """A regular file's bytes and identity. O_NONBLOCK so that a FIFO put in a file's place
    fails instead of blocking the reader for ever; anything but a regular file, or a file over
    the limit, is an OSError like an unreadable one."""
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
    return Blob(payload, FileIdentity(status.st_ino, status.st_mtime_ns, status.st_size))


def file_identity(path: Path) -> FileIdentity | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return FileIdentity(status.st_ino, status.st_mtime_ns, status.st_size)


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


class LocalStorage(Storage):
    def __init__(self, root: str | Path, stale_staging_s: float = STALE_STAGING_S) -> None:
        self.root = Path(root)
        self.stale_staging_s = stale_staging_s
        # flock is per open file: a second flock of the same folder in this thread would wait
        # for itself, so locks this thread holds are counted instead (publish, then promote).
        self._held = threading.local()

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def where(self, key: str) -> str:
        return str(self.path(key))

    # ---- reading -------------------------------------------------------------------------

    def folders(self, prefix: str) -> list[str]:
        return [entry.name for entry in self.path(prefix).iterdir() if entry.is_dir()]

    def folders_holding(self, prefix: str, filename: str) -> list[str]:
        return [entry.name for entry in self.path(prefix).iterdir() if (entry / filename).is_file()]

    def files(self, prefix: str) -> list[str]:
        return [entry.name for entry in self.path(prefix).iterdir()]

    def identity(self, key: str) -> Identity | None:
        try:
            status = self.path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileIdentity(status.st_ino, status.st_mtime_ns, status.st_size)

    def read(self, key: str, limit_bytes: int | None = None) -> Blob:
        path = self.path(key)
        # A symlink (of the file, or of a folder on its way) may point anywhere; the registry
        # serves only what lies inside it, so a link out of it reads as unreadable.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise OSError(errno.EACCES, "leads outside the registry (a symbolic link)", str(path))
        return read_blob(path, limit_bytes)

    # ---- writing -------------------------------------------------------------------------

    @contextmanager
    def locked(self, folder: str) -> Iterator[None]:
        held: dict[str, int] = self._held.__dict__.setdefault("depth", {})
        if held.get(folder):
            held[folder] += 1
            try:
                yield
            finally:
                held[folder] -= 1
            return
        directory = self.path(folder)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            held[folder] = 1
            try:
                yield
            finally:
                held[folder] = 0
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def publish(
        self, parent: str, first_number: int, files: dict[str, bytes], marker: str, marker_for: MarkerFor
    ) -> int:
        target_root = self.path(parent)
        staging_root = target_root.parent / ".staging"
        target_root.mkdir(parents=True, exist_ok=True)
        staging_root.mkdir(exist_ok=True)
        self._sweep_stale_staging(staging_root)
        staging = staging_root / f"{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for filename, payload in files.items():
                _write_synced(staging / filename, payload)
            number = first_number
            while True:
                _write_synced(staging / marker, marker_for(number))
                _fsync_dir(staging)
                try:
                    os.rename(staging, target_root / str(number))
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    number += 1  # another writer took this number first
                    continue
                _fsync_dir(target_root)
                return number
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _sweep_stale_staging(self, staging_root: Path) -> None:
        """Staging folders of writers killed long ago; never visible, only disk space."""
        cutoff = time.time() - self.stale_staging_s
        for leftover in staging_root.iterdir():
            try:
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                continue

    def update(self, key: str, change: Change, limit_bytes: int | None = None) -> None:
        path = self.path(key)
        with self.locked(str(Path(key).parent) if "/" in key else ""):
            try:
                current: bytes | None = read_regular_file(path, limit_bytes)
            except FileNotFoundError:
                current = None
            payload = change(current)
            temporary = path.with_name(f".{path.stem}-{uuid.uuid4().hex}{path.suffix}")
            try:
                _write_synced(temporary, payload)
                os.replace(temporary, path)
            finally:
                temporary.unlink(missing_ok=True)
            _fsync_dir(path.parent)
