"""Prometheus metrics of the serving path, defined once and shared by the engine and the API.

With several workers (api/runtime/workers.py) every process writes its samples to the folder named by
prometheus-client's PROMETHEUS_MULTIPROC_DIR and a scrape of any worker merges them: counters
and histograms are summed; each gauge says below how its workers' values combine. Exited
workers' gauges are dropped (the `live` modes, with `mark_process_dead`).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter(
    "forecast_requests_total", "Forecast requests by model, version and HTTP status", ["model", "version", "status"]
)
REQUEST_LATENCY = Histogram(
    "forecast_request_latency_seconds",
    "Forecast request latency, parse to response",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
# Series queued in every worker together.
BACKTESTS = Counter(
    "forecast_backtests_total",
    "POST /v1/backtest by served model, version and HTTP status",
    ["model", "version", "status"],
)
BACKTEST_WINDOWS = Counter("forecast_backtest_windows_total", "Windows scored by backtests", ["model", "version"])
# The latest accuracy record of each served model (`forecast evaluate`): its MASE on fresh data,
# the ratio to the seasonal naive's (alert when >= 1) and to its own test MASE. One family, a few
# measures per model.
PRODUCTION_ACCURACY = Gauge(
    "forecast_production_accuracy",
    "The latest accuracy record of each model on fresh data: measure=mase, ratio_to_seasonal_naive, ratio_to_test",
    ["model", "measure"],
    multiprocess_mode="livemax",
)
QUEUE_DEPTH = Gauge(
    "forecast_queue_depth", "Series waiting in the batcher's queue", ["model", "version"], multiprocess_mode="livesum"
)
BATCH_SIZE = Histogram("forecast_batch_size", "Series per forward pass", ["model", "version"], buckets=_BATCH_BUCKETS)
# The shared inference process's forward passes (FORECAST_INFERENCE=per_device): each merges the
# batches the workers sent meanwhile, so against forecast_batch_size it shows what merging gains.
DEVICE_BATCH_SIZE = Histogram(
    "forecast_device_batch_size",
    "Series per forward pass of the shared inference process, merged from the workers' batches",
    ["model", "version"],
    buckets=(*_BATCH_BUCKETS, 2048, 4096),
)
QUEUE_WAIT = Histogram(
    "forecast_queue_wait_seconds",
    "Time a series waited in the queue before its batch ran",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
)
COMPUTE_TIME = Histogram(
    "forecast_compute_seconds", "Time of one batched forward pass", ["model", "version"], buckets=_LATENCY_BUCKETS
)
# The most any worker holds (each worker loads its own copy; memory follows the largest).
MODELS_LOADED = Gauge("forecast_models_loaded", "Model versions loaded and serving", multiprocess_mode="livemax")
LOAD_FAILURES = Counter("forecast_model_load_failures_total", "Versions that failed to load", ["model"])
REJECTED = Counter("forecast_rejected_total", "Series refused by a full queue", ["model", "version"])

# The registry's health as the engine last saw it. A scan that could not be used (the root
# unreadable or empty) changes nothing that is served; these say that the state is stale.
REGISTRY_SCAN_ERRORS = Counter(
    "forecast_registry_scan_errors_total",
    "Registry scans that could not be used (root unreadable or empty): what is served did not change",
)
REGISTRY_LAST_SCAN_OK = Gauge(
    "forecast_registry_last_scan_ok", "1 when the last registry scan was usable, else 0", multiprocess_mode="livemin"
)
REGISTRY_LAST_GOOD_SCAN = Gauge(
    "forecast_registry_last_good_scan_timestamp_seconds",
    "Unix time of the last usable registry scan",
    multiprocess_mode="livemin",
)
REGISTRY_MODEL_ERRORS = Gauge(
    "forecast_registry_model_errors",
    "Models whose aliases.json or versions could not be read on the last scan (their last good aliases serve)",
    multiprocess_mode="livemax",
)
UNSERVED_ALIASES = Gauge(
    "forecast_unserved_aliases",
    "Aliases whose version on disk is not the one served (failed to load, missing, or waiting to retry)",
    multiprocess_mode="livemax",
)


def scrape() -> bytes:
    """The text of /metrics: this process's metrics, or every worker's merged. prometheus-client
    chose its storage from PROMETHEUS_MULTIPROC_DIR at import, so the same variable decides here."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return generate_latest()
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=folder)
    return generate_latest(merged)
