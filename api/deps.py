"""Shared dependencies of the routes, as Annotated aliases.

They are coroutines on purpose: FastAPI runs a plain `def` dependency in its thread pool, which
costs every request a thread hop (and contention for the GIL with the inference thread)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from forecast.engine import Engine
from forecast.registry import Registry
from forecast.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_registry(request: Request) -> Registry:
    return (await get_engine(request)).registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
