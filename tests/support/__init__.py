"""Helpers the tests share (registries, servers, data), imported by name rather than through
conftest modules."""
