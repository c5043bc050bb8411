"""What the POST routes (forecast, backtest) share: the body parsed straight into its typed
request (off the event loop when large), the request limits, giving up when the client hangs
up, and the labels and status their metrics count each request under."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import prometheus_client
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from api.errors import error_kind
from api.http.schemas import ForecastRequest
from forecast.errors import ClientDisconnected, ForecastError, InvalidRequest, RequestTooLarge
from forecast.registry.manifest import Manifest
from forecast.settings import Settings

Body = TypeVar("Body", bound=BaseModel)

Answer = TypeVar("Answer")


# Bodies larger than this are parsed on a worker thread (about 1 ms per 10,000 numbers), so
# a bulk request never holds the event loop that answers everyone else.
_PARSE_INLINE_BYTES = 64 * 1024


async def parsed(request: Request, kind: type[Body]) -> Body:
    try:
        raw = await request.body()
    except ClientDisconnect:  # hung up mid-body, or cut off by the body deadline (api/runtime/transport.py)
        raise ClientDisconnected("the client disconnected before its request body was complete") from None
    if len(raw) <= _PARSE_INLINE_BYTES:
        return _parse(raw, kind)
    return await asyncio.to_thread(_parse, raw, kind)


def _parse(raw: bytes, kind: type[Body]) -> Body:
    """pydantic's own JSON parser straight into the typed request (no intermediate dicts);
    it takes NaN literals, which then get the error that names their series and position."""
    try:
        return kind.model_validate_json(raw)
    except ValidationError as exc:
        found = exc.errors(include_url=False)
        series_level = any(len(e["loc"]) > 1 and e["loc"][0] == "series" for e in found)
        errors = [{**e, "loc": ("body", *e["loc"])} for e in found]  # where FastAPI's own would put them
        raise RequestValidationError(errors, body=_loose(raw) if series_level else None) from None


def _loose(raw: bytes) -> Any:
    """The body as plain JSON, to name the series an error is about; None when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def check_limits(body: ForecastRequest, settings: Settings) -> None:
    if len(body.series) > settings.max_series_per_request:
        raise RequestTooLarge(
            f"{len(body.series)} series in one request; the limit is {settings.max_series_per_request} "
            "(FORECAST_MAX_SERIES_PER_REQUEST)"
        )
    total = 0
    for series in body.series:
        total += series.points
        if len(series.values) > settings.max_points_per_series:
            raise RequestTooLarge(
                f"{len(series.values)} points; the limit is {settings.max_points_per_series} per series "
                "(FORECAST_MAX_POINTS_PER_SERIES)",
                series_id=series.id,
            )
    if total > settings.max_points_per_request:
        raise RequestTooLarge(
            f"{total} points (values and covariates) in one request; the limit is {settings.max_points_per_request} "
            "(FORECAST_MAX_POINTS_PER_REQUEST): split the series over several requests"
        )
    if len({s.id for s in body.series}) < len(body.series):
        duplicates = [series_id for series_id, count in Counter(s.id for s in body.series).items() if count > 1]
        raise InvalidRequest(f"duplicate series ids {duplicates[:5]}; each series needs its own id")


def check_answer_size(body: ForecastRequest, model_horizon: int, settings: Settings) -> int:
    """The numbers the answer will hold, series x horizon x (1 + 2 x levels); RequestTooLarge
    beyond FORECAST_MAX_ANSWER_VALUES, before anything is queued."""
    horizon = body.horizon if body.horizon is not None else model_horizon
    values = len(body.series) * min(horizon, model_horizon) * (1 + 2 * len(body.levels))
    if values > settings.max_answer_values:
        raise RequestTooLarge(
            f"the answer would hold {values:,} numbers ({len(body.series)} series x {horizon} steps x "
            f"(1 + 2 x {len(body.levels)} levels)); the limit is {settings.max_answer_values:,} "
            "(FORECAST_MAX_ANSWER_VALUES): ask for fewer series, steps or levels per request"
        )
    return values


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        continue


async def unless_disconnected(request: Request, work: Coroutine[Any, Any, Answer]) -> Answer:
    """Await the forecast, but give up when the client hangs up: cancelling drops the request's
    queued series, so a client that timed out costs no forward pass."""
    answer = asyncio.ensure_future(work)
    hang_up = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({answer, hang_up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hang_up.cancel()
    if not answer.done():
        answer.cancel()
        raise ClientDisconnected("the client disconnected before its forecast was ready")
    return answer.result()


def request_body(schema: str) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses its own body (see `parsed`); the
    service's OpenAPI fills in what the served models accept (api/http/openapi.py)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


@dataclass(slots=True)
class Outcome:
    """What a request's metrics are labelled with: the served model's name and version, never
    the request's text (made-up model names must not create new Prometheus series; "-" until a
    model is resolved), and the status it ended with."""

    model: str = "-"
    version: str = ""
    status: int = 500

    def served(self, manifest: Manifest) -> None:
        self.model, self.version = manifest.name, str(manifest.version)


@contextmanager
def counted(
    requests: prometheus_client.Counter, latency: prometheus_client.Histogram | None = None
) -> Iterator[Outcome]:
    """Counts the request in `requests` by model, version and status however it ends (and its
    time in `latency` by model): 200, the status of the library error it raised, 422 for a body
    that failed validation, 500 for anything else."""
    started = time.perf_counter()
    outcome = Outcome()
    try:
        yield outcome
        outcome.status = 200
    except ForecastError as exc:
        outcome.status = error_kind(exc).status
        raise
    except RequestValidationError:
        outcome.status = 422
        raise
    finally:
        requests.labels(outcome.model, outcome.version, str(outcome.status)).inc()
        if latency is not None:
            latency.labels(outcome.model).observe(time.perf_counter() - started)
