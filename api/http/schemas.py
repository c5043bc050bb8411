"""Request and response bodies of the public API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints, model_validator

from api.errors import MAX_ID_CHARS
from forecast.model.covariates import MAX_COVARIATE_NAME_CHARS
from forecast.registry.accuracy import AccuracyRecord
from forecast.registry.manifest import Manifest
from forecast.series.covariates import MAX_CATEGORY_CHARS
from forecast.serving.pipeline import RequestForecast

# Bounds on every string and number a client sends: validation must cost little and quote
# little. ISO 8601 with nanoseconds and a zone offset is 35 characters.
MAX_TIMESTAMP_CHARS = 40
MAX_FREQ_CHARS = 32
MAX_NAME_CHARS = 64
MAX_HORIZON = 100_000
MAX_COVARIATES = 100  # of each kind, per series
# JSON has one number type: strict floats take integers, never booleans or numeric strings.
Number = Annotated[float, Strict()]
Timestamp = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TIMESTAMP_CHARS)]
CovariateName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_COVARIATE_NAME_CHARS)]
# A static covariate: a category (text, or a number such as a store code) or a number.
StaticValue = Annotated[str, StringConstraints(max_length=MAX_CATEGORY_CHARS)] | Number


def _whole_number(value: object) -> object:
    """JSON Schema's integer includes 3.0; a boolean or a string is not one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A version or a horizon: an integer, or a float with no fraction; never true or "3". (The
# bounds come before the validator so that they show in the schema.)
Version = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(_whole_number), Strict()]
Horizon = Annotated[int, Field(ge=1, le=MAX_HORIZON), BeforeValidator(_whole_number), Strict()]


class SeriesIn(BaseModel):
    """One series: values with explicit timestamps, or values with a start and a frequency.
    Timestamps are ISO 8601 (e.g. 2024-01-31T13:00:00, with an optional zone offset). A model
    trained with covariates needs each of them, by name and kind (GET /v1/models/{name} lists them)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    values: list[Number | None] = Field(
        min_length=1, description="null where a value is missing (a gap, filled and masked by the model)"
    )
    timestamps: list[Timestamp] | None = None
    start: Timestamp | None = None
    freq: str | None = Field(default=None, min_length=1, max_length=MAX_FREQ_CHARS)
    past_covariates: dict[CovariateName, list[Number | None]] | None = Field(
        default=None, max_length=MAX_COVARIATES, description="known up to the last value: as long as values"
    )
    future_covariates: dict[CovariateName, list[Number | None]] | None = Field(
        default=None,
        max_length=MAX_COVARIATES,
        description="known over the horizon too: len(values) + horizon, from the first posted point to the last step",
    )
    static_covariates: dict[CovariateName, StaticValue] | None = Field(
        default=None, max_length=MAX_COVARIATES, description="one value per series: a category or a number"
    )

    @property
    def points(self) -> int:
        """Every number posted for the series, covariates included: what the request limits count."""
        lists = [*(self.past_covariates or {}).values(), *(self.future_covariates or {}).values()]
        return len(self.values) + sum(len(values) for values in lists)

    @model_validator(mode="after")
    def _one_time_axis(self) -> SeriesIn:
        if (self.timestamps is None) == (self.start is None):
            raise ValueError("give either 'timestamps' or 'start' (with an optional 'freq')")
        return self


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    version: Version | None = None
    alias: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    horizon: Horizon | None = None
    levels: list[Annotated[Number, Field(gt=0.0, lt=100.0)]] = Field(default_factory=list, max_length=20)
    series: list[SeriesIn] = Field(min_length=1)

    @model_validator(mode="after")
    def _version_or_alias(self) -> ForecastRequest:
        if self.version is not None and self.alias is not None:
            raise ValueError("give 'version' or 'alias', not both")
        return self


# Origins of one backtest: the window cap (FORECAST_MAX_BACKTEST_WINDOWS) bounds the work; this
# bounds the number itself, so that a huge one is refused by validation, not by arithmetic.
MAX_ORIGINS = 1_000_000
Count = Annotated[int, Field(ge=1, le=MAX_ORIGINS), BeforeValidator(_whole_number), Strict()]


class BacktestRequest(ForecastRequest):
    """POST /v1/backtest: the forecast request's series, scored at rolling origins."""

    origins: Count | None = Field(
        default=None, description="the last K origins that leave `horizon` actuals after them (default 1)"
    )
    last_points: Count | None = Field(
        default=None, description="instead of `origins`: every origin whose forecast lies in the last N points"
    )
    stride: Count = Field(default=1, description="steps between origins")
    return_forecasts: bool = Field(default=False, description="add each origin's forecast (mean) to the answer")

    @model_validator(mode="after")
    def _origins_or_last_points(self) -> BacktestRequest:
        if self.origins is not None and self.last_points is not None:
            raise ValueError("give 'origins' or 'last_points', not both")
        return self


class Interval(BaseModel):
    lower: list[float]
    upper: list[float]


class SeriesOut(BaseModel):
    id: str
    timestamps: list[str]
    mean: list[float]
    intervals: dict[str, Interval] = Field(default_factory=dict)
    padded: int = Field(
        default=0, description="points of the model's input window before the series' first point (a short series)"
    )
    missing: int = Field(default=0, description="points of the input window inside the series that were missing")


class ServedVersion(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: int
    arch: str


class ForecastResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: ServedVersion
    forecasts: list[SeriesOut]


MethodMetrics = dict[str, float | None]  # mae, mse, rmse, smape, mase (None: undefined)


class BacktestMetrics(BaseModel):
    model: MethodMetrics
    naive: MethodMetrics
    seasonal_naive: MethodMetrics


class SeriesBacktestOut(BaseModel):
    id: str
    metrics: BacktestMetrics
    origins: list[str] = Field(description="each origin's first forecast step (ISO 8601)")
    forecasts: list[list[float]] | None = Field(default=None, description="each origin's mean forecast, when asked")


class BacktestResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: ServedVersion
    horizon: int
    windows: int = Field(description="forecasts scored: series x origins")
    metrics: BacktestMetrics = Field(description="over every window of every series, on the original scale")
    coverage: dict[str, float] = Field(description="level -> share of the actuals inside its interval")
    series: list[SeriesBacktestOut]


class VersionSummary(BaseModel):
    version: int
    arch: str
    input_size: int
    horizon: int
    freq: str
    created_at: datetime
    aliases: list[str]
    test_metrics: dict[str, dict[str, float | None]]
    covariates: dict[str, list[str]] = Field(
        default_factory=dict, description="covariate names by kind (past, future, static) a request must carry"
    )


class ModelSummary(BaseModel):
    name: str
    versions: list[VersionSummary]
    aliases: dict[str, int]
    served: dict[str, int] = Field(description="alias -> version the server is serving right now")
    accuracy: list[AccuracyRecord] = Field(
        default_factory=list,
        description="GET /v1/models/{name} only: the latest accuracy records on fresh data (`forecast evaluate`), "
        "oldest first",
    )


class ModelList(BaseModel):
    models: list[ModelSummary] = Field(description="by name; at most `limit` (1,000 unless asked for fewer)")
    next_after: str | None = Field(
        default=None, description="more models follow: ask again with `after` set to this name; null on the last page"
    )


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
            "padded": result.padded[row],
            "missing": result.missing[row],
        }
        for row, (series_id, timestamps) in enumerate(zip(result.series_ids, result.timestamps, strict=True))
    ]
    return {
        "model": {"name": manifest.name, "version": manifest.version, "arch": manifest.arch},
        "forecasts": forecasts,
    }
