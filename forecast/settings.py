"""The one settings object: environment variables prefixed FORECAST_, validated at start-up."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORECAST_", extra="ignore", frozen=True)

    registry: str = Field(default="./models", description="registry root: a path, or `s3://bucket/prefix`")
    # The endpoint of an S3-compatible store (MinIO, ...) when `registry` is s3://bucket/prefix;
    # unset: AWS's own. Credentials come from boto3's default chain, never from here.
    s3_endpoint_url: str | None = Field(
        default=None,
        description="endpoint of an S3-compatible store (MinIO, ...) when `FORECAST_REGISTRY` is `s3://bucket/prefix`; unset: AWS",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="`auto` (CUDA when present), `cpu`, `cuda`"
    )
    # Batcher defaults chosen from bench/serve.py; see docs/benchmarks.md (Serving).
    # None: the device's default (DEFAULT_MAX_BATCH_SIZE), since a GPU's forward costs nearly the
    # same at 256 series as at 64 while a CPU's grows with the batch.
    max_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="most series in one forward pass; unset: the device's default; `1` turns batching off",
    )
    max_wait_ms: float = Field(
        default=0.0, ge=0.0, le=1000.0, description="longest the first queued series waits for others to join"
    )
    # Two clients' worth of the serving benchmark's load (64 connections x 32 series): one client
    # may fill half (below), so others still find room behind a bulk client.
    queue_limit: int = Field(
        default=4096, ge=1, description="queued series beyond which requests get 503 + Retry-After"
    )
    # One client's backlog must not fill the queue that everyone shares: half of it still holds
    # 64 connections of 32 series each (what the serving benchmark's one client keeps in flight).
    queue_limit_per_client: int = Field(
        default=2048,
        ge=1,
        description="queued series of one client (API key, else address) beyond which its requests get 503 + Retry-After; batches are drawn from the clients in turn",
    )
    # Intra-op threads of torch in the server; 0 keeps torch's default (one per core), divided
    # among the workers when there are several.
    torch_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="torch's intra-op threads in the server; `0` keeps torch's default (one per core)",
    )
    # Serving processes sharing the port, each a whole server (api/runtime/workers.py); 0: one per usable
    # core (CPU affinity and the cgroup's CPU quota), measured by bench/serve.py --workers.
    workers: int = Field(
        default=0,
        ge=0,
        le=256,
        description="serving processes sharing the port, each with its own engine and batchers; 0: one per usable core (affinity and CPU quota)",
    )
    # Where the forward passes of several workers run: "per_worker", each worker its own copy of
    # the models on the device; "per_device", one inference process per device that every worker
    # sends its batches to and that merges them (forecast/serving/device_process.py); "auto":
    # per_device on CUDA (a GPU forward costs about the same at 8 series as at 256, and N CUDA
    # contexts are time-sliced), per_worker on the CPU (measured: bench/serve.py --workers).
    inference: Literal["auto", "per_worker", "per_device"] = Field(
        default="auto",
        description="where several workers' forward passes run: `per_worker` (each its own copy), `per_device` (one inference process per device, fed by every worker, merging their batches), `auto`: per_device on CUDA, per_worker on the CPU",
    )
    # The server's young-generation GC threshold (CPython's default is 700); 0 keeps the defaults
    # and skips gc.freeze(). See api/runtime/gc_tuning.py for why.
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="the server's young-generation GC threshold (CPython's is 700); start-up objects are frozen out of collections; `0` keeps CPython's defaults (why: the serving benchmark)",
    )
    request_timeout_s: float = Field(default=30.0, gt=0.0, description="a series queued longer is answered 504")
    reload_seconds: float = Field(
        default=2.0, gt=0.0, description="how often the registry is polled for new versions and moved aliases"
    )
    # A version that failed to load is retried after reload_seconds, doubling up to this cap, and
    # at once when its files change (see forecast/serving/failures.py).
    load_retry_max_s: float = Field(
        default=300.0,
        gt=0.0,
        description="longest wait between retries of a version that failed to load with unchanged files (the first wait is `FORECAST_RELOAD_SECONDS`, then doubling; changed files: at once)",
    )
    # Versions kept loaded at most; the least recently used unaliased, unleased ones go first.
    # Aliased versions are always kept, even beyond it.
    max_loaded_versions: int = Field(
        default=8,
        ge=1,
        description="loaded versions beyond which the least recently used unaliased, unleased ones are unloaded (aliased versions are always kept)",
    )
    # A loaded version that no alias points at is unloaded once no request used it for this long.
    idle_unload_s: float = Field(
        default=300.0, ge=0.0, description="a loaded version no alias points at is unloaded once unused this long"
    )
    max_series_per_request: int = Field(default=1000, ge=1, description="more series: 413")
    max_points_per_series: int = Field(default=50_000, ge=1, description="longer series: 413")
    # All series of one request together: 500 hourly series of 1,000 points fit twice over,
    # and the parse stays around 0.1 s and 100 MB at the cap (413 beyond).
    max_points_per_request: int = Field(
        default=1_000_000,
        ge=1,
        description="all series of a request together; more: 413 (500 series of 1,000 points fit twice over)",
    )
    # The answer is bounded as the request is: series x horizon x (1 + 2 x levels) numbers. A JSON
    # number is about 18 bytes and serialising holds about four times the body, so the default's
    # 2,000,000 numbers are about 36 MB of answer and 150 MB of peak memory: 1,000 series x 168
    # steps x 2 levels fit, 1,000 x 720 x 20 levels (565 MB of JSON) do not.
    max_answer_values: int = Field(
        default=2_000_000,
        ge=1,
        description="numbers in one forecast answer, series x horizon x (1 + 2 x levels); more: 413 before anything is queued",
    )
    # How often the latest accuracy records (`forecast evaluate`) are read for /metrics and the
    # model pages; they arrive a few times a day.
    accuracy_refresh_s: float = Field(
        default=60.0, gt=0.0, description="how often the server reads the latest accuracy records for `/metrics`"
    )
    # POST /v1/backtest: windows (series x origins) in one backtest, and forecast values its answer
    # may carry when they are asked for (413 beyond either). 50,000 windows is M4 Hourly's 414
    # series at 120 origins: about 3.5 s on two CPU cores (bench/backtest.py: 19,872 in 1.3 s).
    max_backtest_windows: int = Field(
        default=50_000,
        ge=1,
        description="windows (series x origins) of one backtest, API or command line; more: 413 before any forward pass",
    )
    max_backtest_values: int = Field(
        default=2_000_000,
        ge=1,
        description="forecast values a backtest answer may carry with `return_forecasts`; more: 413",
    )
    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="larger bodies, announced or chunked: 413"
    )
    # Seconds between SIGTERM (readiness off) and closing the listening socket.
    shutdown_grace_s: float = Field(
        default=1.0,
        ge=0.0,
        le=300.0,
        description="after SIGTERM, seconds of failing readiness before the socket closes",
    )
    # Transport limits (api/runtime/transport.py); a fronting proxy should add its own, see docs/guides/security.md.
    # From a connection's opening (or a keep-alive request's first byte) to the end of its
    # headers: a deadline, not an idle timer, so a byte-a-second client is closed too (408).
    header_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        le=300.0,
        description="from a connection's opening (or a keep-alive request's first byte) to the end of its headers; then 408 and close. A deadline, not an idle timer",
    )
    # From the end of the headers to the end of the body (408): the largest allowed body
    # (max_body_bytes) must arrive within it, 32 MiB in 60 s is about 4.5 Mbit/s.
    body_timeout_s: float = Field(
        default=60.0,
        gt=0.0,
        le=3600.0,
        description="from the end of the headers to the end of the body; then 408 and close",
    )
    # An idle keep-alive connection is closed after this; a proxy's upstream idle timeout
    # must be shorter, or it may reuse a connection the server is closing (a 502).
    keep_alive_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        le=3600.0,
        description="an idle keep-alive connection is closed after this; keep a proxy's upstream idle timeout shorter",
    )
    # How long a response may wait for a client that stopped reading (more than 64 KiB unsent)
    # before the connection is dropped: a slow reader must not hold a request slot for ever.
    send_timeout_s: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="a client that stops reading (over 64 KiB of response unsent) is dropped after this",
    )
    # Request line plus headers (431 beyond); nginx's default buffers hold 32 KiB at most.
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, le=1024 * 1024, description="request line plus headers; more: 431 and close"
    )
    # Open connections; beyond, the connection idle longest (keep-alive, or still sending its
    # headers) is closed to make room, so half-open connections cannot lock a new one out.
    max_connections: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="open connections; past it the connection idle longest (between requests or still sending headers) is closed; none idle: 503",
    )
    # Requests being read or answered at once (503 + Retry-After beyond); /healthz, /readyz
    # and /metrics are exempt, so a busy server is not restarted or left unobserved.
    max_concurrent_requests: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description="requests in flight; more: 503 + Retry-After. `/healthz`, `/readyz`, `/metrics` are exempt",
    )
    # Connections the kernel queues before the server accepts them (capped by somaxconn).
    listen_backlog: int = Field(
        default=2048,
        ge=1,
        le=65535,
        description="connections the kernel queues before they are accepted (capped by `net.core.somaxconn`)",
    )
    # API keys and rate limits (api/access/keys.py, api/access/ratelimit.py, api/access/middleware.py; docs/guides/security.md "API keys and
    # rate limits"). Keys: `KEY`, `NAME:KEY` or `NAME:SCOPE:KEY`, comma-separated, or a path (it
    # holds a `/`) to a file of salted hashes. Unset or empty: the API is open, as it was before.
    # A SecretStr, so that a printed or logged Settings does not show the keys.
    api_keys: SecretStr | None = Field(
        default=None,
        description='API keys required on `/v1/*`: `KEY`, `NAME:KEY` or `NAME:SCOPE:KEY` comma-separated, or the path (it holds a `/`) of a file of salted hashes; unset: open (see "API keys and rate limits")',
    )
    # /metrics names the models and their traffic, so with keys it takes a `read` key unless this
    # is on; /docs, /redoc and /openapi.json describe the API and hold no data, so they stay open
    # unless this is off (a browser cannot send a key to /docs).
    public_metrics: bool = Field(
        default=False, description="with keys, `/metrics` is open to anyone (otherwise it takes a `read` key)"
    )
    public_docs: bool = Field(
        default=True, description="with keys, `/docs`, `/redoc` and `/openapi.json` stay open (`false`: any valid key)"
    )
    # `limits` strings ("50/second", "3000/minute"), per API key (per client address without
    # keys). Unset: no limit; the batcher's bounded queue already turns overload into 503s, and
    # the right share per client depends on the deployment.
    rate_limit_requests: str | None = Field(
        default=None,
        description="requests per window per key (per client address without keys), e.g. `50/second`; beyond: 429",
    )
    rate_limit_series: str | None = Field(
        default=None,
        description="series (in forecast requests) per window per key, e.g. `2000/minute`; beyond: 429, one request over it alone: 413",
    )
    rate_limit_storage: str | None = Field(
        default=None,
        description="where the rate limits count, shared by every worker and replica: a `limits` storage URI such as `redis://redis:6379` (needs the redis client installed); unset: each process's memory, each of N workers allowing 1/N of each limit",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed to call the API from a browser"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


DEFAULT_MAX_BATCH_SIZE = {"cpu": 64, "cuda": 256}


def max_batch_size(settings: Settings, device_type: str) -> int:
    return settings.max_batch_size or DEFAULT_MAX_BATCH_SIZE.get(device_type, DEFAULT_MAX_BATCH_SIZE["cpu"])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
