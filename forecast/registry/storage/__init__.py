"""Where the registry keeps its files: a local folder, or S3-compatible object storage."""

from __future__ import annotations

from pathlib import Path

from forecast.registry.storage.base import Blob, FileIdentity, Identity, ObjectIdentity, Storage
from forecast.registry.storage.local import LocalStorage

__all__ = ["Blob", "FileIdentity", "Identity", "LocalStorage", "ObjectIdentity", "Storage", "open_storage"]


def open_storage(root: str | Path, *, s3_endpoint_url: str | None = None) -> Storage:
    """`s3://bucket/prefix` on object storage (at `s3_endpoint_url` for MinIO and other
    S3-compatible stores, else AWS), anything else a local folder."""
    if isinstance(root, str) and root.startswith("s3://"):
        from forecast.registry.storage.s3 import S3Storage  # boto3 only for an S3 registry

        return S3Storage(root, endpoint_url=s3_endpoint_url)
    return LocalStorage(root)
