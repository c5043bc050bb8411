"""The boto3 client of an S3 registry, safe across forks and threads.

One boto3 session per process: it caches the service description that every client loads (tens
of milliseconds each), and a session must not be shared across a fork. One client per storage
per process, made on first use and again in a forked child (the trainer's writers, a server's
workers): a client's connection pool must not cross a fork either.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_session_lock = threading.Lock()
_session: tuple[int, Any] | None = None


def _boto3_session() -> Any:
    global _session
    with _session_lock:
        if _session is None or _session[0] != os.getpid():
            import boto3  # only an S3 registry pays for the import

            _session = (os.getpid(), boto3.session.Session())
        return _session[1]


class S3Client:
    """Calling it gives this process's client for `endpoint_url` (None: AWS)."""

    def __init__(self, endpoint_url: str | None) -> None:
        self.endpoint_url = endpoint_url
        self._client: Any = None
        self._client_pid = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                from botocore.config import Config

                config = Config(
                    # A few retries for a transient fault; more would hold a poll or a request for many seconds.
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    # Checksums only where the API requires them: several S3-compatible stores
                    # refuse the newer default trailing checksums.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                session = _boto3_session()
                with _session_lock:  # a session is not thread-safe; its clients are
                    self._client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
                self._client_pid = os.getpid()
            return self._client
