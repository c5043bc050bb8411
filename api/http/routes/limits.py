"""GET /v1/limits: the request limits a client splits its work under (the Python client reads
them once), so that it never learns them from a 413. A `forecast`-scope key may read them."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.http.deps import SettingsDep

router = APIRouter(prefix="/v1", tags=["limits"])


class Limits(BaseModel):
    max_series_per_request: int
    max_points_per_series: int
    max_points_per_request: int = Field(description="values and covariates of every series of one request")
    max_body_bytes: int
    max_backtest_windows: int
    rate_limit_series: str | None = Field(description="series per window per key, e.g. '2000/minute'; null: none")
    queue_limit_per_client: int = Field(
        description="series one client may have waiting for a model at once (per server process): the requests a "
        "client keeps in flight together should hold no more"
    )


@router.get("/limits", response_model=Limits)
async def limits(settings: SettingsDep) -> Limits:
    return Limits(
        max_series_per_request=settings.max_series_per_request,
        max_points_per_series=settings.max_points_per_series,
        max_points_per_request=settings.max_points_per_request,
        max_body_bytes=settings.max_body_bytes,
        max_backtest_windows=settings.max_backtest_windows,
        rate_limit_series=settings.rate_limit_series,
        queue_limit_per_client=settings.queue_limit_per_client,
    )
