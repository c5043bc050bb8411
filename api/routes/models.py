"""GET /v1/models...: what the registry holds and what the server serves. Read-only."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from api.deps import EngineDep, RegistryDep
from api.schemas import ModelList, ModelSummary, VersionSummary
from forecast.errors import ModelNotFound, RegistryCorrupt
from forecast.registry.manifest import REPORT_FILE
from forecast.registry.store import Registry, check_name

router = APIRouter(prefix="/v1/models", tags=["models"])


def _summary(registry: Registry, name: str, served: dict[str, int]) -> ModelSummary:
    versions = registry.versions(name)
    if not versions:
        raise ModelNotFound(f"model {name!r} is not in the registry; known models: {registry.list_models()}")
    aliases = registry.aliases(name)
    summaries = []
    for version in versions:
        try:
            manifest = registry.manifest(name, version)
        except RegistryCorrupt:
            continue  # listed by the server log and metrics; not shown as if it were usable
        summaries.append(
            VersionSummary(
                version=version,
                arch=manifest.arch,
                input_size=manifest.input_size,
                horizon=manifest.horizon,
                freq=manifest.freq,
                created_at=manifest.created_at,
                aliases=sorted(a for a, v in aliases.items() if v == version),
                test_metrics=manifest.metrics.get("test", {}),
            )
        )
    return ModelSummary(name=name, versions=summaries, aliases=aliases, served=served)


def _revalidated(request: Request, payload: BaseModel) -> Response:
    """The JSON with a strong ETag of its bytes; 304 and no body when the client already has
    them. Dashboards poll these listings every few seconds and they rarely change; with
    `Cache-Control: no-cache` a browser revalidates each time and reuses its copy on 304."""
    body = payload.model_dump_json().encode()
    tag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    offered = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}
    if tag in offered or "*" in offered:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("", response_model=ModelList)
async def list_models(request: Request, registry: RegistryDep, engine: EngineDep) -> Response:
    def read() -> ModelList:
        return ModelList(models=[_summary(registry, n, engine.served_aliases(n)) for n in registry.list_models()])

    return _revalidated(request, await asyncio.to_thread(read))


@router.get("/{name}", response_model=ModelSummary)
async def get_model(name: str, request: Request, registry: RegistryDep, engine: EngineDep) -> Response:
    check_name(name)
    return _revalidated(request, await asyncio.to_thread(_summary, registry, name, engine.served_aliases(name)))


@router.get("/{name}/versions/{version}")
async def get_version(name: str, version: int, registry: RegistryDep) -> dict[str, Any]:
    """The version's manifest: hyperparameters, metrics, calibration, provenance."""
    check_name(name)

    def read() -> dict[str, Any]:
        registry.resolve(name, version)  # 404 naming the known models or versions
        return registry.manifest(name, version).model_dump(mode="json")

    return await asyncio.to_thread(read)


@router.get("/{name}/versions/{version}/report")
async def get_report(name: str, version: int, registry: RegistryDep) -> dict[str, Any]:
    """Loss per epoch and actual-vs-forecast samples of the test block, for the dashboard."""
    check_name(name)

    def read() -> dict[str, Any]:
        registry.resolve(name, version)  # 404 naming the known models or versions
        manifest = registry.manifest(name, version)
        report: dict[str, Any] = json.loads(registry.read_file(name, version, REPORT_FILE, manifest))
        return report

    return await asyncio.to_thread(read)
