"""The one settings object: environment variables prefixed FORECAST_, validated at start-up."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORECAST_", extra="ignore", frozen=True)

    registry: str = "./models"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Batcher defaults chosen from bench/serve.py; see the README's serving section.
    # None: the device's default (DEFAULT_MAX_BATCH_SIZE), since a GPU's forward costs nearly the
    # same at 256 series as at 64 while a CPU's grows with the batch.
    max_batch_size: int | None = Field(default=None, ge=1, le=4096)
    max_wait_ms: float = Field(default=0.0, ge=0.0, le=1000.0)
    queue_limit: int = Field(default=2048, ge=1)
    # Intra-op threads of torch in the server; 0 keeps torch's default (one per core).
    torch_threads: int = Field(default=0, ge=0, le=256)
    # The server's young-generation GC threshold (CPython's default is 700); 0 keeps the defaults
    # and skips gc.freeze(). See api/gc_tuning.py for why.
    gc_threshold: int = Field(default=50_000, ge=0)
    request_timeout_s: float = Field(default=30.0, gt=0.0)
    reload_seconds: float = Field(default=2.0, gt=0.0)
    max_series_per_request: int = Field(default=1000, ge=1)
    max_points_per_series: int = Field(default=50_000, ge=1)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # Seconds between SIGTERM (readiness off) and closing the listening socket.
    shutdown_grace_s: float = Field(default=1.0, ge=0.0, le=300.0)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

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
