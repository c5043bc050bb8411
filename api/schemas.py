"""Request and response bodies of the public API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forecast.registry.manifest import Manifest
from forecast.serving.pipeline import RequestForecast


class SeriesIn(BaseModel):
    """One series: values with explicit timestamps, or values with a start and a frequency."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    values: list[float] = Field(min_length=1)
    timestamps: list[str] | None = None
    start: str | None = None
    freq: str | None = None

    @model_validator(mode="after")
    def _one_time_axis(self) -> SeriesIn:
        if (self.timestamps is None) == (self.start is None):
            raise ValueError(f"series {self.id!r}: give either 'timestamps' or 'start' (with an optional 'freq')")
        return self


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(min_length=1, max_length=64)
    version: int | None = Field(default=None, ge=1)
    alias: str | None = Field(default=None, min_length=1, max_length=64)
    horizon: int | None = Field(default=None, ge=1)
    levels: list[float] = Field(default_factory=list, max_length=20)
    series: list[SeriesIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _version_or_alias(self) -> ForecastRequest:
        if self.version is not None and self.alias is not None:
            raise ValueError("give 'version' or 'alias', not both")
        return self


class Interval(BaseModel):
    lower: list[float]
    upper: list[float]


class SeriesOut(BaseModel):
    id: str
    timestamps: list[str]
    mean: list[float]
    intervals: dict[str, Interval] = Field(default_factory=dict)


class ServedVersion(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: int
    arch: str


class ForecastResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: ServedVersion
    forecasts: list[SeriesOut]


class VersionSummary(BaseModel):
    version: int
    arch: str
    input_size: int
    horizon: int
    freq: str
    created_at: datetime
    aliases: list[str]
    test_metrics: dict[str, dict[str, float | None]]


class ModelSummary(BaseModel):
    name: str
    versions: list[VersionSummary]
    aliases: dict[str, int]
    served: dict[str, int] = Field(description="alias -> version the server is serving right now")


class ModelList(BaseModel):
    models: list[ModelSummary]


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable kind, e.g. invalid_input, not_found")
    message: str
    series_id: str | None = None
    detail: list[dict[str, Any]] | None = None


def forecast_body(manifest: Manifest, result: RequestForecast) -> dict[str, Any]:
    """The 200 body of POST /v1/forecast, shaped as `ForecastResponse` (tests validate it against
    the route's OpenAPI schema). Plain lists, not models: this runs for every request, and orjson
    writes them directly."""
    means = result.mean.tolist()
    bounds = {level: (b.lower.tolist(), b.upper.tolist()) for level, b in result.intervals.items()}
    forecasts = [
        {
            "id": series_id,
            "timestamps": list(timestamps),
            "mean": means[row],
            "intervals": {
                level: {"lower": lower[row], "upper": upper[row]} for level, (lower, upper) in bounds.items()
            },
        }
        for row, (series_id, timestamps) in enumerate(zip(result.series_ids, result.timestamps, strict=True))
    ]
    return {
        "model": {"name": manifest.name, "version": manifest.version, "arch": manifest.arch},
        "forecasts": forecasts,
    }


def error_body(
    kind: str, message: str, series_id: str | None = None, detail: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Every error response's body, shaped as `ErrorBody`."""
    body: dict[str, Any] = {"error": kind, "message": message, "series_id": series_id}
    if detail is not None:
        body["detail"] = detail
    return body
