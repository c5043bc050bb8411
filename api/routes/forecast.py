"""POST /v1/forecast: limits -> lease -> forecast -> response. The stages of a forecast live in
the served version's `ForecastPipeline`; this route adds what is HTTP's: the request limits,
the client hanging up, the request metrics and the body."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from api.access import limit_series
from api.deps import EngineDep, SettingsDep
from api.errors import error_kind
from api.jsonio import FastJSONResponse
from api.schemas import ErrorBody, ForecastRequest, ForecastResponse, forecast_body
from forecast.errors import ClientDisconnected, ForecastError, InvalidRequest, RequestTooLarge
from forecast.serving.telemetry import REQUEST_LATENCY, REQUESTS
from forecast.settings import Settings

router = APIRouter(prefix="/v1", tags=["forecast"])

_ERRORS = {code: {"model": ErrorBody} for code in (404, 413, 422, 503, 504)}

Answer = TypeVar("Answer")


# Bodies larger than this are parsed on a worker thread (about 1 ms per 10,000 numbers), so
# a bulk request never holds the event loop that answers everyone else.
_PARSE_INLINE_BYTES = 64 * 1024


async def _parsed(request: Request) -> ForecastRequest:
    try:
        raw = await request.body()
    except ClientDisconnect:  # hung up mid-body, or cut off by the body deadline (api/transport.py)
        raise ClientDisconnected("the client disconnected before its request body was complete") from None
    if len(raw) <= _PARSE_INLINE_BYTES:
        return _parse(raw)
    return await asyncio.to_thread(_parse, raw)


def _parse(raw: bytes) -> ForecastRequest:
    """pydantic's own JSON parser straight into the typed request (no intermediate dicts);
    it takes NaN literals, which then get the error that names their series and position."""
    try:
        return ForecastRequest.model_validate_json(raw)
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


def _check_limits(body: ForecastRequest, settings: Settings) -> None:
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


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        continue


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, Answer]) -> Answer:
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


# The body is parsed by the route itself (see _parsed), so its schema is declared here; the
# service's OpenAPI fills in what the served models accept (api/openapi.py).
_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ForecastRequest"}}},
    }
}


@router.post("/forecast", response_model=ForecastResponse, responses=_ERRORS, openapi_extra=_REQUEST_BODY)  # type: ignore[arg-type]
async def forecast(request: Request, engine: EngineDep, settings: SettingsDep) -> FastJSONResponse:
    started = time.perf_counter()
    # Labels come from the served model, never from the request's text: made-up model names
    # must not create new Prometheus series. "-" until a model is resolved.
    model_label, version_label, status = "-", "", 500
    try:
        body = await _parsed(request)
        _check_limits(body, settings)
        await limit_series(request, len(body.series))  # series/s per key (api/access.py)
        async with engine.lease(body.model, body.version, body.alias) as served:
            manifest = served.manifest
            model_label, version_label = manifest.name, str(manifest.version)
            work = served.pipeline.forecast(
                body.series, horizon=body.horizon, levels=body.levels, timeout_s=settings.request_timeout_s
            )
            result = await _unless_disconnected(request, work)
        status = 200
    except ForecastError as exc:
        status = error_kind(exc).status
        raise
    except RequestValidationError:
        status = 422
        raise
    finally:
        REQUESTS.labels(model_label, version_label, str(status)).inc()
        REQUEST_LATENCY.labels(model_label).observe(time.perf_counter() - started)
    return FastJSONResponse(forecast_body(manifest, result))
