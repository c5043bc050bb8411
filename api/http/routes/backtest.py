"""POST /v1/backtest: limits -> lease -> rolling-origin evaluation -> response. The evaluation
is the serving pipeline's (`forecast.serving.backtest`); this route adds what is HTTP's: the
request limits, the series rate limit (counted in windows), the client hanging up, the metrics
and the body."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.access.middleware import caller_of, limit_series
from api.errors import ErrorBody
from api.http.deps import EngineDep, SettingsDep
from api.http.jsonio import FastJSONResponse, json_answer
from api.http.routes.posting import check_limits, counted, parsed, request_body, unless_disconnected
from api.http.schemas import BacktestRequest, BacktestResponse
from forecast.errors import RequestTooLarge
from forecast.serving.backtest import BacktestLimits, BacktestSpec, backtest, result_body
from forecast.serving.telemetry import BACKTEST_WINDOWS, BACKTESTS

router = APIRouter(prefix="/v1", tags=["backtest"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (404, 413, 422, 429, 503, 504)}


@router.post(
    "/backtest", response_model=BacktestResponse, responses=_ERRORS, openapi_extra=request_body("BacktestRequest")
)
async def backtest_route(request: Request, engine: EngineDep, settings: SettingsDep) -> FastJSONResponse:
    with counted(BACKTESTS) as outcome:
        body = await parsed(request, BacktestRequest)
        check_limits(body, settings)
        spec = BacktestSpec(
            horizon=body.horizon,
            levels=tuple(body.levels),
            origins=body.origins,
            last_points=body.last_points,
            stride=body.stride,
            return_forecasts=body.return_forecasts,
        )
        limits = BacktestLimits(settings.max_backtest_windows, settings.max_backtest_values)

        async def admit(windows: int) -> None:
            try:
                await limit_series(request, windows)  # a window costs what a forecast's series costs
            except RequestTooLarge as exc:
                raise RequestTooLarge(
                    f"a backtest's windows count as series against the rate limit: {exc}; for a backtest, ask for "
                    "fewer origins, a larger stride or fewer series"
                ) from None

        async with engine.lease(body.model, body.version, body.alias) as served:
            manifest = served.manifest
            outcome.served(manifest)
            work = backtest(
                served.pipeline,
                body.series,
                spec,
                limits=limits,
                timeout_s=settings.request_timeout_s,
                admit=admit,
                caller=caller_of(request),
            )
            result = await unless_disconnected(request, work)
        BACKTEST_WINDOWS.labels(outcome.model, outcome.version).inc(result.windows)
    numbers = len(result.series) + (result.windows * result.horizon if body.return_forecasts else 0)
    return await json_answer(lambda: result_body(manifest, result), numbers)
