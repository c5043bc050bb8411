"""GET /v1/models...: what the registry holds and what the server serves. Read-only.

The listing is served from memory, built once per registry state (api/http/listing.py). One model's
page reads its files now: a torn aliases.json shows the aliases last read (the ones being
served), a version whose manifest is invalid is left out (the server log, /readyz and the
metrics name it), and while the registry cannot be read the versions served are shown from
memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.http.deps import EngineDep, RegistryDep
from api.http.listing import MAX_PAGE_MODELS, ModelListing, model_summary
from api.http.schemas import ModelList, ModelSummary
from forecast.errors import ModelNotFound, NotFound, RegistryCorrupt
from forecast.registry.accuracy import latest_records
from forecast.registry.manifest import REPORT_FILE, Manifest
from forecast.registry.report import Report, read_report
from forecast.registry.store import Registry, check_name
from forecast.serving.engine import Engine

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/models", tags=["models"])


@dataclass(slots=True)
class _Served:
    """What the engine serves, copied on the event loop: the model's page reads files on a
    worker thread, and the engine's state changes on the loop meanwhile."""

    aliases: dict[str, dict[str, int]]  # model -> alias -> version served
    wanted: dict[str, dict[str, int] | None]  # model -> the aliases last read from its files
    loaded: dict[str, list[Manifest]]  # model -> its loaded versions
    refused: dict[str, set[int]]  # model -> versions that failed to load as their files are now

    @classmethod
    def of(cls, engine: Engine, names: list[str] | None = None) -> _Served:
        names = engine.served_models() if names is None else names
        return cls(
            aliases={name: engine.served_aliases(name) for name in names},
            wanted={name: engine.wanted_aliases(name) for name in names},
            loaded={name: engine.loaded_manifests(name) for name in names},
            refused={name: engine.refused_versions(name) for name in names},
        )


def _aliases(registry: Registry, served: _Served, name: str) -> dict[str, int]:
    try:
        return registry.aliases(name)
    except RegistryCorrupt as exc:
        # Logged once by the engine when it found it; each dashboard poll would repeat it here.
        logger.debug("listing %s with its last good aliases: %s", name, exc)
        known = served.wanted.get(name)
        return known if known is not None else served.aliases.get(name, {})


def _manifests(registry: Registry, served: _Served, name: str) -> dict[int, Manifest]:
    """The versions to list: the registry's valid ones that did not fail to load, and the ones
    being served (from memory: they answer requests even while the registry cannot be read)."""
    manifests = {manifest.version: manifest for manifest in served.loaded.get(name, [])}
    try:
        on_disk = registry.versions(name)
    except OSError:
        on_disk = []
    refused = served.refused.get(name, set())
    for version in on_disk:
        if version in manifests or version in refused:
            continue
        try:
            manifests[version] = registry.manifest(name, version)
        except (RegistryCorrupt, NotFound):
            continue  # listed by the server log and metrics; not shown as if it were usable
    return manifests


# Accuracy records shown on a model's page: a month of daily evaluations.
ACCURACY_RECORDS_SHOWN = 30


def _summary(registry: Registry, served: _Served, name: str) -> ModelSummary:
    manifests = _manifests(registry, served, name)
    if not manifests:
        try:
            known = registry.list_models()
        except OSError:
            known = sorted(served.aliases)
        raise ModelNotFound(f"model {name!r} is not in the registry; known models: {known}")
    accuracy = []
    try:
        accuracy = latest_records(registry.storage, name, ACCURACY_RECORDS_SHOWN)
    except OSError as exc:  # the model's page still answers; the records come back with the registry
        logger.warning("accuracy records of %s unreadable: %s", name, exc)
    return model_summary(name, manifests, _aliases(registry, served, name), served.aliases.get(name, {}), accuracy)


def _revalidated(request: Request, body: bytes, tag: str | None = None) -> Response:
    """The JSON with a strong ETag of its bytes; 304 and no body when the client already has
    them. Dashboards poll these listings every few seconds and they rarely change; with
    `Cache-Control: no-cache` a browser revalidates each time and reuses its copy on 304."""
    tag = tag or f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    offered = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}
    if tag in offered or "*" in offered:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("", response_model=ModelList)
async def list_models(
    request: Request,
    after: Annotated[str | None, Query(max_length=200, description="the `next_after` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_MODELS, description="models on this page")] = MAX_PAGE_MODELS,
) -> Response:
    listing: ModelListing = request.app.state.model_listing
    page = await listing.page(after, limit)
    return _revalidated(request, page.body, page.etag)


@router.get("/{name}", response_model=ModelSummary)
async def get_model(name: str, request: Request, registry: RegistryDep, engine: EngineDep) -> Response:
    check_name(name)
    served = _Served.of(engine, [name])
    summary = await asyncio.to_thread(_summary, registry, served, name)
    return _revalidated(request, summary.model_dump_json().encode())


@router.get("/{name}/versions/{version}")
async def get_version(name: str, version: int, registry: RegistryDep, engine: EngineDep) -> dict[str, Any]:
    """The version's manifest: hyperparameters, metrics, calibration, provenance."""
    check_name(name)
    loaded = {manifest.version: manifest for manifest in engine.loaded_manifests(name)}

    def read() -> dict[str, Any]:
        try:
            registry.resolve(name, version)  # 404 naming the known models or versions
            return registry.manifest(name, version).model_dump(mode="json")
        except NotFound:
            served = loaded.get(version)
            if served is None:
                raise
            return served.model_dump(mode="json")  # served from memory while the registry is unreadable

    return await asyncio.to_thread(read)


@router.get("/{name}/versions/{version}/report", response_model=Report)
async def get_report(name: str, version: int, registry: RegistryDep) -> Report:
    """Loss per epoch and actual-vs-forecast samples of the test block, for the dashboard."""
    check_name(name)

    def read() -> Report:
        registry.resolve(name, version)  # 404 naming the known models or versions
        manifest = registry.manifest(name, version)
        payload = registry.read_file(name, version, REPORT_FILE, manifest)
        return read_report(payload, registry.version_location(name, version))

    return await asyncio.to_thread(read)
