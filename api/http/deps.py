"""Shared dependencies of the routes, as Annotated aliases.

They are coroutines on purpose: FastAPI runs a plain `def` dependency in its thread pool, which
costs every request a thread hop (and contention for the GIL with the inference thread)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from forecast.registry.store import Registry
from forecast.serving.engine import Engine
from forecast.settings import Settings


async def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def app_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def app_registry(request: Request) -> Registry:
    return (await app_engine(request)).registry


SettingsDep = Annotated[Settings, Depends(app_settings)]
EngineDep = Annotated[Engine, Depends(app_engine)]
RegistryDep = Annotated[Registry, Depends(app_registry)]
