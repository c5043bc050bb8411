"""The FastAPI application factory and its lifespan: the engine starts and stops with the app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.access.middleware import install_access
from api.access.ratelimit import RATE_LIMIT_HEADERS
from api.errors import install_error_handlers
from api.http.listing import ModelListing
from api.http.middleware import BodyLimitMiddleware, HeadAsGetMiddleware, RequestIdMiddleware
from api.http.openapi import install_openapi
from api.http.routes import backtest, forecast, health, limits, models
from forecast import __version__
from forecast.registry.store import open_registry
from forecast.serving.engine import Engine
from forecast.serving.pipeline import ForwardFactory, network_forward
from forecast.settings import Settings, get_settings

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent.parent / "static"  # api/static: the dashboard


def create_app(
    settings: Settings | None = None,
    forward_factory: ForwardFactory = network_forward,
    inference_unreachable: Callable[[], str | None] | None = None,
) -> FastAPI:
    """The service on `settings`' registry; `forward_factory` builds each version's forward pass
    (the network's; the serving benchmark passes a no-op to measure the HTTP path alone).
    `inference_unreachable`, when the passes run in an inference process, says why it cannot be
    reached (None when it can): /readyz fails while it cannot."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = Engine(open_registry(settings.registry, settings), settings, forward_factory)
        app.state.engine = engine
        app.state.model_listing = ModelListing(engine)
        app.state.draining = False
        await engine.start()
        logger.info("serving registry %s on %s", settings.registry, engine.device)
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="Forecast API",
        version=__version__,
        description="Forecasts from RNN, LSTM and GRU models trained into a versioned registry.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.inference_unreachable = inference_unreachable
    install_error_handlers(app)
    app.include_router(forecast.router)
    app.include_router(backtest.router)
    app.include_router(limits.router)
    app.include_router(models.router)
    app.include_router(health.router)
    install_openapi(app, settings)
    if (STATIC / "index.html").exists():
        app.mount("/dashboard", StaticFiles(directory=STATIC, html=True), name="dashboard")

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/dashboard/")

    _install_middleware(app, settings)
    return app


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Added innermost first: the request id outermost, then the body limit, CORS, access, and
    HEAD as GET innermost."""
    app.add_middleware(HeadAsGetMiddleware)
    # Inside CORS, so that a browser on another origin can read a 401 or 429; before the body
    # is read, so that a refusal costs no parsing.
    install_access(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After", "WWW-Authenticate", *RATE_LIMIT_HEADERS],
        )
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
