"""POST /v1/forecast: limits -> lease -> forecast -> response. The stages of a forecast live in
the served version's `ForecastPipeline`; this route adds what is HTTP's: the request limits,
the client hanging up, the request metrics and the body."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError

from api.access.middleware import caller_of, limit_series
from api.errors import ErrorBody, error_kind
from api.http.deps import EngineDep, SettingsDep
from api.http.jsonio import FastJSONResponse, json_answer
from api.http.routes.posting import check_answer_size, check_limits, parsed, request_body, unless_disconnected
from api.http.schemas import ForecastRequest, ForecastResponse, forecast_body
from forecast.errors import ForecastError
from forecast.serving.telemetry import REQUEST_LATENCY, REQUESTS

router = APIRouter(prefix="/v1", tags=["forecast"])


_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 413, 422, 503, 504)}


@router.post(
    "/forecast", response_model=ForecastResponse, responses=_ERRORS, openapi_extra=request_body("ForecastRequest")
)
async def forecast(request: Request, engine: EngineDep, settings: SettingsDep) -> FastJSONResponse:
    started = time.perf_counter()
    # Labels come from the served model, never from the request's text: made-up model names
    # must not create new Prometheus series. "-" until a model is resolved.
    model_label, version_label, status = "-", "", 500
    try:
        body = await parsed(request, ForecastRequest)
        check_limits(body, settings)
        await limit_series(request, len(body.series))  # series/s per key (api/access/middleware.py)
        async with engine.lease(body.model, body.version, body.alias) as served:
            manifest = served.manifest
            model_label, version_label = manifest.name, str(manifest.version)
            answer_values = check_answer_size(body, manifest.horizon, settings)
            work = served.pipeline.forecast(
                body.series,
                horizon=body.horizon,
                levels=body.levels,
                timeout_s=settings.request_timeout_s,
                caller=caller_of(request),
            )
            result = await unless_disconnected(request, work)
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
    return await json_answer(lambda: forecast_body(manifest, result), answer_values)
