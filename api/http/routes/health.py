"""Liveness, readiness and Prometheus metrics.

Readiness stays 200 while the engine serves its last good state through a registry fault; the
body says what is degraded: the registry scan's state and each model not served as its files say.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api.http.deps import EngineDep
from forecast.serving.telemetry import scrape

router = APIRouter(tags=["health"])

# A registry with thousands of broken aliases must not make the probe's body large.
_PROBLEMS_PER_MODEL = 10


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, engine: EngineDep) -> JSONResponse:
    """Ready once the registry could be read and the models are loaded, while the inference
    process (if the forward passes run in one) can be reached, and no longer once a shutdown has
    begun."""
    draining = getattr(request.app.state, "draining", False)
    ready = engine.ready and not draining
    check = request.app.state.inference_unreachable if ready else None  # unready anyway: no connect to try
    inference_error = None if check is None else await asyncio.to_thread(check)
    ready = ready and inference_error is None
    health = engine.health()
    problems: dict[str, list[dict[str, Any]]] = {}
    omitted = 0
    for name, found in health.problems.items():
        problems[name] = [asdict(problem) for problem in found[:_PROBLEMS_PER_MODEL]]
        omitted += max(0, len(found) - _PROBLEMS_PER_MODEL)
    body = {
        "ready": ready,
        "draining": draining,
        "degraded": health.degraded,
        "models": {n: engine.served_aliases(n) for n in engine.served_models()},
        "registry": asdict(health.registry),
        "problems": problems,
    }
    if omitted:
        body["problems_omitted"] = omitted
    if check is not None:
        body["inference"] = {"reachable": inference_error is None, "error": inference_error}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
)
async def metrics() -> Response:
    """One view of the whole server: with several workers, all of them merged."""
    return Response(scrape(), media_type=CONTENT_TYPE_LATEST)
