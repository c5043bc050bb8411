"""An S3 API over HTTP for the tests: moto's server (tests/support/s3_server.py) in its own
process on a free port, started once per session, with a fresh bucket for each test.

The session's environment gets fake credentials and FORECAST_S3_ENDPOINT_URL, so the product
(and every child process a test starts) finds the endpoint through its ordinary settings and
its credentials through boto3's default chain, as it would on AWS or MinIO.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Started as a module from the repository root: run as a script from tests/support/, its
# folder would come first on sys.path and tests/support/requests.py would shadow `requests`.
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-role probe on a laptop or CI
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass(slots=True)
class S3Server:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    _client: Any = None

    def client(self) -> Any:
        """The tests' own client (one: making a client costs tens of milliseconds)."""
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def new_bucket(self, prefix: str = "models") -> str:
        """A fresh bucket; returns the registry URL s3://bucket/prefix."""
        bucket = f"test-{uuid.uuid4().hex[:24]}"
        self.client().create_bucket(Bucket=bucket)
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    def keys(self, url: str) -> list[str]:
        """Every key under a registry URL, relative to its prefix."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        strip = len(prefix) + 1 if prefix else 0
        return sorted(item["Key"][strip:] for page in pages for item in page.get("Contents", []))

    def put(self, url: str, key: str, payload: bytes) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.client().put_object(Bucket=bucket, Key=f"{prefix}/{key}" if prefix else key, Body=payload)

    def get(self, url: str, key: str) -> bytes:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        body: bytes = self.client().get_object(Bucket=bucket, Key=f"{prefix}/{key}" if prefix else key)["Body"].read()
        return body

    def copy_folder(self, url: str, source: str, target: str) -> None:
        for key in self.keys(url):
            if key.startswith(f"{source}/"):
                self.put(url, target + key[len(source) :], self.get(url, key))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_s3_server() -> S3Server:
    port = _free_port()
    # A file, not a pipe: the server logs every request, and a full pipe would stall it.
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the server writes it until it exits)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.s3_server", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    server = S3Server(endpoint_url=f"http://127.0.0.1:{port}", process=process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"the S3 server exited: {log.read()[-2000:].decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError("the S3 server did not start") from None
            time.sleep(0.05)
    return server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    saved = {key: os.environ.get(key) for key in [*ENVIRONMENT, "FORECAST_S3_ENDPOINT_URL"]}
    os.environ.update(ENVIRONMENT)
    server = start_s3_server()
    os.environ["FORECAST_S3_ENDPOINT_URL"] = server.endpoint_url
    from forecast.settings import get_settings

    get_settings.cache_clear()
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@pytest.fixture
def s3_url(s3_server: S3Server) -> str:
    """A registry URL in a bucket of its own."""
    return s3_server.new_bucket()
