"""POST /v1/forecast: validate the posted series against the model, window and scale them as in
training, run them through the model's batcher, and return forecasts with intervals."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Request

from api.deps import EngineDep, SettingsDep
from api.errors import status_of
from api.jsonio import FastJSONResponse, FastJSONRoute
from api.schemas import ErrorBody, ForecastRequest, ForecastResponse
from forecast.batcher import BatchOutput
from forecast.errors import ClientDisconnected, ForecastError, InvalidRequest, RequestTooLarge
from forecast.inference import assemble, check_request, prepare_series
from forecast.telemetry import REQUEST_LATENCY, REQUESTS

router = APIRouter(prefix="/v1", tags=["forecast"], route_class=FastJSONRoute)

_ERRORS = {code: {"model": ErrorBody} for code in (404, 413, 422, 503, 504)}


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


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, list[BatchOutput]]) -> list[BatchOutput]:
    """Await the batcher, but give up when the client hangs up: cancelling drops the request's
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
            horizon = check_request(manifest, body.horizon, body.levels)
            prepared = [
                prepare_series(
                    manifest, s.id, s.values, timestamps=s.timestamps, start=s.start, freq=s.freq, horizon=horizon
                )
                for s in body.series
            ]
            outputs = await _unless_disconnected(
                request, served.batcher.submit([p.window for p in prepared], timeout_s=settings.request_timeout_s)
            )
            forecasts = [assemble(manifest, p, o, body.levels) for p, o in zip(prepared, outputs, strict=True)]
        status = 200
    except ForecastError as exc:
        status = status_of(exc)[0]
        raise
    finally:
        REQUESTS.labels(model_label, version_label, str(status)).inc()
        REQUEST_LATENCY.labels(model_label).observe(time.perf_counter() - started)
    content = {
        "model": {"name": manifest.name, "version": manifest.version, "arch": manifest.arch},
        "forecasts": [
            {"id": f.series_id, "timestamps": f.timestamps, "mean": f.mean, "intervals": f.intervals} for f in forecasts
        ],
    }
    return FastJSONResponse(content)
