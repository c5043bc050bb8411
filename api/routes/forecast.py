"""POST /v1/forecast: limits -> lease -> forecast -> response. The stages of a forecast live in
the served version's `ForecastPipeline`; this route adds what is HTTP's: the request limits,
the client hanging up, the request metrics and the body."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Request

from api.deps import EngineDep, SettingsDep
from api.errors import error_kind
from api.jsonio import FastJSONResponse, FastJSONRoute
from api.schemas import ErrorBody, ForecastRequest, ForecastResponse, forecast_body
from forecast.errors import ClientDisconnected, ForecastError, InvalidRequest, RequestTooLarge
from forecast.serving.telemetry import REQUEST_LATENCY, REQUESTS

router = APIRouter(prefix="/v1", tags=["forecast"], route_class=FastJSONRoute)

_ERRORS = {code: {"model": ErrorBody} for code in (404, 413, 422, 503, 504)}

Answer = TypeVar("Answer")


def _check_limits(body: ForecastRequest, max_series: int, max_points: int) -> None:
    if len(body.series) > max_series:
        raise RequestTooLarge(
            f"{len(body.series)} series in one request; the limit is {max_series} (FORECAST_MAX_SERIES_PER_REQUEST)"
        )
    for series in body.series:
        if len(series.values) > max_points:
            raise RequestTooLarge(
                f"{len(series.values)} points; the limit is {max_points} per series (FORECAST_MAX_POINTS_PER_SERIES)",
                series_id=series.id,
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


@router.post("/forecast", response_model=ForecastResponse, responses=_ERRORS)  # type: ignore[arg-type]
async def forecast(
    request: Request, body: ForecastRequest, engine: EngineDep, settings: SettingsDep
) -> FastJSONResponse:
    started = time.perf_counter()
    # Labels come from the served model, never from the request's text: made-up model names
    # must not create new Prometheus series. "-" until a model is resolved.
    model_label, version_label, status = "-", "", 500
    try:
        _check_limits(body, settings.max_series_per_request, settings.max_points_per_series)
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
    finally:
        REQUESTS.labels(model_label, version_label, str(status)).inc()
        REQUEST_LATENCY.labels(model_label).observe(time.perf_counter() - started)
    return FastJSONResponse(forecast_body(manifest, result))
