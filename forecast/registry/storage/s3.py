"""The registry on S3-compatible object storage (AWS S3, MinIO, ...), through boto3.

Object stores have no rename and no lock, so publication and aliases rest on conditional
writes, which S3 decides atomically:

- a version number N is claimed by a create-only put (`If-None-Match: *`) of
  `<model>/.staging/<N>.claim`: of two writers that pick the same N, one gets 412 and tries
  N + 1, so nobody writes into a folder another writer holds;
- the claimant puts the version's other files into `<model>/versions/<N>/`, then its
  manifest, create-only again: the manifest is the commit marker, and readers list only
  folders that hold one, so a writer killed at any moment leaves no visible version;
- aliases.json is read with its ETag and written back with `If-Match` on it (`If-None-Match: *`
  when there is none yet); a 412 means another writer got in between, so the update is
  re-applied to what it wrote: no update is lost.

Version folders without a manifest older than `stale_upload_s` (writers killed long ago) are
deleted by the next publisher. Claims stay: they are a few bytes each and keep a number from
being reused. Every put is a single PutObject (no multipart upload is ever left behind).
Credentials come from boto3's default chain (environment, config files, instance roles).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from forecast.errors import InvalidSetting, RegistryConflict
from forecast.registry.layout import VERSION_PATTERN
from forecast.registry.storage.base import Blob, Change, Identity, MarkerFor, ObjectIdentity, Storage
from forecast.registry.storage.s3_client import S3Client

logger = logging.getLogger(__name__)

STALE_UPLOAD_S = 24 * 3600
# Compare-and-swap attempts before an update gives up: each failed attempt means another
# writer's update landed, so this many in a row means a runaway writer, not contention.
_MAX_UPDATE_ATTEMPTS = 100
_PRECONDITION_CODES = {"PreconditionFailed", "412"}
# S3 answers 409 when two conditional writes of one key overlap; the loser may retry.
_CONFLICT_CODES = {"ConditionalRequestConflict", "409", "OperationAborted"}
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


@dataclass(frozen=True, slots=True)
class _Listed:
    key: str  # relative to the root
    size: int
    modified: datetime


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` as (bucket, prefix without slashes at either end)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise InvalidSetting(f"registry URL {url!r} is not s3://bucket/prefix")
    return parts.netloc, parts.path.strip("/")


class S3Storage(Storage):
    def __init__(self, url: str, *, endpoint_url: str | None = None, stale_upload_s: float = STALE_UPLOAD_S) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint_url = endpoint_url
        self.stale_upload_s = stale_upload_s
        self._s3 = S3Client(endpoint_url)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix and key else (self.prefix or key)

    def _folder(self, prefix: str) -> str:
        """The listing prefix of a folder: its key with one trailing slash ("" at the root)."""
        key = self._key(prefix)
        return f"{key}/" if key else ""

    @contextmanager
    def _translated(self, key: str) -> Iterator[None]:
        """boto3's errors as the OSErrors every backend raises: absent is FileNotFoundError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            message = exc.response.get("Error", {}).get("Message") or code
            if code in _MISSING_CODES:
                raise FileNotFoundError(errno.ENOENT, f"{code}: {message}", self.where(key)) from exc
            raise OSError(errno.EIO, f"{code}: {message}", self.where(key)) from exc
        except BotoCoreError as exc:  # no endpoint, no credentials, a dropped connection
            raise OSError(errno.EIO, str(exc), self.where(key)) from exc

    # ---- reading -------------------------------------------------------------------------

    def _pages(self, prefix: str, delimiter: str | None) -> Iterator[dict[str, Any]]:
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._folder(prefix)}
        if delimiter:
            options["Delimiter"] = delimiter
        with self._translated(prefix):
            yield from self._s3().get_paginator("list_objects_v2").paginate(**options)

    def folders(self, prefix: str) -> list[str]:
        start = len(self._folder(prefix))
        return [
            common["Prefix"][start:].rstrip("/")
            for page in self._pages(prefix, "/")
            for common in page.get("CommonPrefixes", [])
        ]

    def folders_holding(self, prefix: str, filename: str) -> list[str]:
        """One listing of every key below `prefix` (a page holds 1,000): no object is read."""
        holding = []
        for item in self._list(prefix):
            folder, _, rest = item.key.rpartition("/")
            if rest == filename and folder.rpartition("/")[0] == prefix.rstrip("/"):
                holding.append(folder.rpartition("/")[2])
        return holding

    def files(self, prefix: str) -> list[str]:
        start = len(self._folder(prefix))
        return [item["Key"][start:] for page in self._pages(prefix, "/") for item in page.get("Contents", [])]

    def _list(self, prefix: str) -> list[_Listed]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        return [
            _Listed(key=item["Key"][strip:], size=int(item["Size"]), modified=item["LastModified"])
            for page in self._pages(prefix, None)
            for item in page.get("Contents", [])
        ]

    def identity(self, key: str) -> Identity | None:
        try:
            with self._translated(key):
                head = self._s3().head_object(Bucket=self.bucket, Key=self._key(key))
        except FileNotFoundError:
            return None
        return ObjectIdentity(etag=head["ETag"], size=int(head["ContentLength"]))

    def read(self, key: str, limit_bytes: int | None = None) -> Blob:
        with self._translated(key):
            response = self._s3().get_object(Bucket=self.bucket, Key=self._key(key))
            size = int(response["ContentLength"])
            body = response["Body"]
            try:
                if limit_bytes is not None and size > limit_bytes:
                    raise OSError(errno.EFBIG, f"{size} bytes, more than the {limit_bytes} allowed", self.where(key))
                payload = body.read() if limit_bytes is None else body.read(limit_bytes + 1)
            finally:
                body.close()
        if limit_bytes is not None and len(payload) > limit_bytes:
            raise OSError(errno.EFBIG, f"more than the {limit_bytes} bytes allowed", self.where(key))
        return Blob(payload, ObjectIdentity(etag=response["ETag"], size=len(payload)))

    # ---- writing -------------------------------------------------------------------------

    def locked(self, folder: str) -> AbstractContextManager[None]:
        """No lock on an object store: every write here is conditional instead."""
        return nullcontext()

    def _put(self, key: str, payload: bytes, **condition: str) -> bool:
        """Put an object; False when its condition failed (412, or 409 for overlapping
        conditional writes, or 404 for If-Match on a key that is gone)."""
        from botocore.exceptions import ClientError

        try:
            with self._translated(key):
                try:
                    self._s3().put_object(Bucket=self.bucket, Key=self._key(key), Body=payload, **condition)
                except ClientError as exc:
                    code = _code(exc)
                    if code in _PRECONDITION_CODES | _CONFLICT_CODES:
                        return False
                    raise
        except FileNotFoundError:
            if "IfMatch" in condition:
                return False
            raise
        return True

    def publish(
        self, parent: str, first_number: int, files: dict[str, bytes], marker: str, marker_for: MarkerFor
    ) -> int:
        staging = f"{parent.rpartition('/')[0]}/.staging" if "/" in parent else ".staging"
        listed = self._list(parent)
        self._sweep_stale_uploads(parent, listed, marker)
        claimed = [int(name.removesuffix(".claim")) for name in self.files(staging) if _is_claim(name)]
        taken = [
            int(item.key[len(parent) + 1 :].partition("/")[0]) for item in listed if _in_numbered(item.key, parent)
        ]
        number = max([first_number, *(n + 1 for n in claimed), *(n + 1 for n in taken)])
        token = f"{os.getpid()}-{uuid.uuid4().hex}".encode()
        while True:
            if not self._put(f"{staging}/{number}.claim", token, IfNoneMatch="*"):
                number += 1  # another writer claimed it first
                continue
            folder = f"{parent}/{number}"
            for filename, payload in files.items():
                self._put(f"{folder}/{filename}", payload)
            if not self._all_present(folder, files):  # swept while this writer stalled for a day
                logger.warning("partial upload %s was swept before its manifest; publishing anew", self.where(folder))
                number += 1
                continue
            if self._put(f"{folder}/{marker}", marker_for(number), IfNoneMatch="*"):
                return number
            raise RegistryConflict(
                f"{self.where(folder)} gained a {marker} while this writer held its claim; "
                "another tool writes into the registry without the protocol"
            )

    def _all_present(self, folder: str, files: dict[str, bytes]) -> bool:
        sizes = {item.key.rpartition("/")[2]: item.size for item in self._list(folder)}
        return all(sizes.get(filename) == len(payload) for filename, payload in files.items())

    def _sweep_stale_uploads(self, parent: str, listed: list[_Listed], marker: str) -> None:
        """Delete version folders that never got their marker and were last written long ago
        (writers killed mid-upload): invisible already, only storage."""
        folders: dict[str, list[_Listed]] = defaultdict(list)
        for item in listed:
            if _in_numbered(item.key, parent):
                folders[item.key[len(parent) + 1 :].partition("/")[0]].append(item)
        cutoff = datetime.now(UTC) - timedelta(seconds=self.stale_upload_s)
        stale = [
            item.key
            for items in folders.values()
            if not any(item.key.endswith(f"/{marker}") for item in items)
            and max(item.modified for item in items) <= cutoff
            for item in items
        ]
        for start in range(0, len(stale), 1000):  # DeleteObjects takes 1,000 keys at most
            batch = stale[start : start + 1000]
            with self._translated(parent):
                self._s3().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(key)} for key in batch], "Quiet": True}
                )
            logger.info("swept %d objects of unfinished uploads under %s", len(batch), self.where(parent))

    def update(self, key: str, change: Change, limit_bytes: int | None = None) -> None:
        for attempt in range(_MAX_UPDATE_ATTEMPTS):
            try:
                blob: Blob | None = self.read(key, limit_bytes)
            except FileNotFoundError:
                blob = None
            payload = change(None if blob is None else blob.payload)
            if blob is None:
                written = self._put(key, payload, IfNoneMatch="*")
            else:
                assert isinstance(blob.identity, ObjectIdentity)
                written = self._put(key, payload, IfMatch=blob.identity.etag)
            if written:
                return
            # Another writer's update landed in between: re-apply to it, after a short random
            # pause so that two writers do not keep colliding in step.
            time.sleep(random.uniform(0.0, min(0.005 * 2**attempt, 0.2)))
        raise RegistryConflict(
            f"{self.where(key)} changed under each of {_MAX_UPDATE_ATTEMPTS} attempts to update it; try again"
        )


def _code(exc: Any) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _is_claim(name: str) -> bool:
    return name.endswith(".claim") and VERSION_PATTERN.fullmatch(name.removesuffix(".claim")) is not None


def _in_numbered(key: str, parent: str) -> bool:
    """Whether a key lies in a numbered folder of `parent` (`<parent>/<digits>/...`)."""
    head, _, rest = key[len(parent) + 1 :].partition("/")
    return key.startswith(f"{parent}/") and bool(rest) and VERSION_PATTERN.fullmatch(head) is not None
