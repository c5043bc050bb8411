"""Shared dependencies of the routes, as Annotated aliases (tests override get_settings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from forecast.engine import Engine
from forecast.registry import Registry
from forecast.settings import Settings, get_settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_registry(request: Request) -> Registry:
    return get_engine(request).registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
