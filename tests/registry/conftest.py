"""The S3 server fixtures (tests/support/s3.py) for the registry's tests."""

from tests.support.s3 import s3_server, s3_url

__all__ = ["s3_server", "s3_url"]
