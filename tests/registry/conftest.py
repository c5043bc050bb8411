"""The S3 server fixtures (tests/s3.py) for the registry's tests."""

from tests.s3 import s3_server, s3_url

__all__ = ["s3_server", "s3_url"]
