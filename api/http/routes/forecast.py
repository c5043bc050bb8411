"""POST /v1/forecast: limits -> lease -> forecast -> response. The stages of a forecast live in
the served version's `ForecastPipeline`; this route adds what is HTTP's: the request limits,
the client hanging up, the request metrics and the body."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.access.middleware import caller_of, limit_series
from api.errors import ErrorBody
from api.http.deps import EngineDep, SettingsDep
from api.http.jsonio import FastJSONResponse, json_answer
from api.http.routes.posting import (
    check_answer_size,
    check_limits,
    counted,
    parsed,
    request_body,
    unless_disconnected,
)
from api.http.schemas import ForecastRequest, ForecastResponse, forecast_body
from forecast.serving.telemetry import REQUEST_LATENCY, REQUESTS

router = APIRouter(prefix="/v1", tags=["forecast"])


_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 413, 422, 503, 504)}


@router.post(
    "/forecast", response_model=ForecastResponse, responses=_ERRORS, openapi_extra=request_body("ForecastRequest")
)
async def forecast(request: Request, engine: EngineDep, settings: SettingsDep) -> FastJSONResponse:
    with counted(REQUESTS, REQUEST_LATENCY) as outcome:
        body = await parsed(request, ForecastRequest)
        check_limits(body, settings)
        await limit_series(request, len(body.series))  # series/s per key (api/access/middleware.py)
        async with engine.lease(body.model, body.version, body.alias) as served:
            manifest = served.manifest
            outcome.served(manifest)
            answer_values = check_answer_size(body, manifest.horizon, settings)
            work = served.pipeline.forecast(
                body.series,
                horizon=body.horizon,
                levels=body.levels,
                timeout_s=settings.request_timeout_s,
                caller=caller_of(request),
            )
            result = await unless_disconnected(request, work)
    return await json_answer(lambda: forecast_body(manifest, result), answer_values)
