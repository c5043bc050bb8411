"""Serving: the engine (model cache, hot reload, leases), the dynamic batcher, the pipeline of
one served version, request preparation and telemetry."""
