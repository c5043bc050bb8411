"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import EngineDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, engine: EngineDep) -> JSONResponse:
    """Ready once the models are loaded, and no longer once a shutdown has begun."""
    draining = getattr(request.app.state, "draining", False)
    ready = engine.ready and not draining
    body = {
        "ready": ready,
        "draining": draining,
        "models": {n: engine.served_aliases(n) for n in engine.served_models()},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
