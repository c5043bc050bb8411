"""The service's OpenAPI document, saying what the forecast route accepts on this server.

FastAPI derives the request schema from `ForecastRequest`, which knows only the generic bounds.
What a request must satisfy to reach a network depends on the served models: their names,
versions and aliases, the points a series needs (the input size), the longest horizon, the
frequency, the highest calibrated interval level. So the document adds one request variant per
served model with those constraints, beside the generic schema (which still describes every
accepted body, e.g. series given by timestamps). Clients and fuzzers (schemathesis) that read
the document then generate requests the models can answer.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.access.middleware import CALLER_HAS_KEY
from api.errors import ErrorBody
from api.http.schemas import MAX_TIMESTAMP_CHARS, BacktestRequest, ForecastRequest
from forecast.errors import ForecastError
from forecast.model.config import NETWORK_MAX_VALUE
from forecast.registry.manifest import Manifest
from forecast.series.frequency import fixed_step_ns
from forecast.serving.engine import Engine
from forecast.settings import Settings

logger = logging.getLogger(__name__)

_REF = "#/components/schemas/{model}"
# Starts a generator can produce that are always valid dates within the calendar's range.
_START_PATTERN = r"^20[0-4][0-9]-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):00:00$"


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Replace `app.openapi` (what /openapi.json and /docs serve) with the served-models-aware
    document, rebuilt only when what is served changes."""
    generic: dict[str, Any] = {}
    cached: dict[tuple[Any, ...], dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        if not generic:
            generic.update(_generic_document(app))
        if settings.api_keys is not None and not CALLER_HAS_KEY.get():
            # with keys, who may not list the models may not read them off the schema either
            return generic
        engine: Engine | None = getattr(app.state, "engine", None)
        served = _served(engine)
        key = tuple((name, tuple(sorted(aliases.items()))) for name, aliases in served.items())
        if key not in cached:
            cached.clear()
            cached[key] = _with_models(generic, _manifests(engine, served), settings)
        return cached[key]

    app.openapi = openapi  # type: ignore[method-assign]


def _generic_document(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for kind in (ForecastRequest, BacktestRequest):  # the routes parse their own bodies
        request = kind.model_json_schema(ref_template=_REF)
        schemas.update(request.pop("$defs", {}))
        schemas[kind.__name__] = request
    _errors_as_envelopes(document)
    return document


def _errors_as_envelopes(document: dict[str, Any]) -> None:
    """Every operation can answer an error, always in the envelope (api/errors.py): FastAPI's
    own 422 schema (HTTPValidationError) is never what the service sends."""
    envelope = {"content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}}}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "Invalid request", **envelope}
            responses["default"] = {"description": "An error, in the envelope", **envelope}
    schemas = document["components"]["schemas"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template=_REF))


def _served(engine: Engine | None) -> dict[str, dict[str, int]]:
    if engine is None:
        return {}
    return {name: engine.served_aliases(name) for name in engine.served_models()}


def _manifests(engine: Engine | None, served: dict[str, dict[str, int]]) -> dict[str, list[tuple[Manifest, list[str]]]]:
    """Each served model's versions with the aliases pointing at them."""
    found: dict[str, list[tuple[Manifest, list[str]]]] = {}
    if engine is None:
        return found
    for name, aliases in served.items():
        for version in sorted(set(aliases.values())):
            try:
                manifest = engine.registry.manifest(name, version)
            except ForecastError as exc:  # served from memory, unreadable on disk right now
                logger.warning("OpenAPI: cannot describe %s version %d: %s", name, version, exc)
                continue
            found.setdefault(name, []).append((manifest, sorted(a for a, v in aliases.items() if v == version)))
    return found


def _with_models(
    generic: dict[str, Any], served: dict[str, list[tuple[Manifest, list[str]]]], settings: Settings
) -> dict[str, Any]:
    document = copy.deepcopy(generic)
    schemas = document["components"]["schemas"]
    schemas["SeriesIn"]["properties"]["values"]["maxItems"] = settings.max_points_per_series
    for kind in ("ForecastRequest", "BacktestRequest"):
        schemas[kind]["properties"]["series"]["maxItems"] = settings.max_series_per_request
    variants = [
        variant
        for versions in served.values()
        for manifest, aliases in versions
        for variant in _variants(manifest, aliases, settings, schemas)
    ]
    if variants:
        # The body is one of these: any other model name is a 404, whatever its fields.
        schemas["ServedModelRequest"] = {
            "description": "A request that one of the served models can answer, by its version or an alias "
            "(ForecastRequest says what each field means).",
            "anyOf": variants,
        }
        body = document["paths"]["/v1/forecast"]["post"]["requestBody"]["content"]["application/json"]
        body["schema"] = {"$ref": _REF.format(model="ServedModelRequest")}
    return document


def _variants(
    manifest: Manifest, aliases: list[str], settings: Settings, schemas: dict[str, Any]
) -> list[dict[str, Any]]:
    """The request schemas of one served version: selected by its version number, or by an
    alias pointing at it (no alias means production). `schemas` are the generic document's,
    derived from the pydantic models; each variant narrows them."""
    selectors: list[dict[str, Any]] = [{"version": {"const": manifest.version}}]
    if aliases:
        selectors.append({"alias": {"enum": aliases}})
    fields = _request_fields(manifest, settings, schemas)
    return [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["model", "series", *selector],
            "properties": {"model": {"const": manifest.name}, **selector, **fields},
        }
        for selector in selectors
    ]


def _covariate_fields(manifest: Manifest) -> dict[str, Any]:
    """The covariates a version reads, each required by name: past ones as long as the window,
    future-known ones the window plus the horizon, static ones a training category or a number."""
    covariates, size = manifest.covariates, manifest.input_size

    def numbers(count: int) -> dict[str, Any]:
        number = {"type": "number", "minimum": -NETWORK_MAX_VALUE, "maximum": NETWORK_MAX_VALUE}
        return {"type": "array", "minItems": count, "maxItems": count, "items": number}

    def named(properties: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "required": list(properties),
            "properties": properties,
            "description": description,
        }

    fields: dict[str, Any] = {}
    if covariates.past:
        past = {c.name: numbers(size) for c in covariates.past}
        fields["past_covariates"] = named(past, "each as long as values")
    if covariates.future:
        future = {c.name: numbers(size + manifest.horizon) for c in covariates.future}
        fields["future_covariates"] = named(future, "each from the first posted point to the last forecast step")
    if covariates.static:
        static = {
            c.name: {"enum": c.categories}
            if c.kind == "categorical"
            else {"type": "number", "minimum": -NETWORK_MAX_VALUE, "maximum": NETWORK_MAX_VALUE}
            for c in covariates.static
        }
        fields["static_covariates"] = named(
            static, "a category seen in training (others are accepted too), or a number"
        )
    return fields


def _request_fields(manifest: Manifest, settings: Settings, schemas: dict[str, Any]) -> dict[str, Any]:
    # A subset of what is accepted (a shorter series is padded, a value may be null, a timestamp
    # left out): the series the version answers without filling, so generated requests that
    # follow the variant reach the network rather than the missing-data bound.
    values = {
        "type": "array",
        "minItems": manifest.input_size,
        "maxItems": settings.max_points_per_series,
        "items": {"type": "number", "minimum": -NETWORK_MAX_VALUE, "maximum": NETWORK_MAX_VALUE},
    }
    start: dict[str, Any] = {"type": "string", "format": "date-time", "maxLength": MAX_TIMESTAMP_CHARS}
    if fixed_step_ns(manifest.freq) is not None:  # any instant is on a fixed step's grid
        start = {"type": "string", "pattern": _START_PATTERN, "description": "an ISO 8601 instant, e.g. this form"}
    stamps = {
        "type": "array",
        "minItems": manifest.input_size,
        "maxItems": settings.max_points_per_series,
        "items": {"type": "string", "format": "date-time", "maxLength": MAX_TIMESTAMP_CHARS},
        "description": "as many as the values, on the model's frequency's grid (a missing one may be left out)",
    }
    common = {
        "id": copy.deepcopy(schemas["SeriesIn"]["properties"]["id"]),
        "values": values,
        "freq": {"enum": [manifest.freq], "description": "or any other spelling of the same frequency"},
    }
    covariates = _covariate_fields(manifest)
    if covariates:
        # The lengths of values and covariates go together, which JSON Schema cannot say: the
        # variant fixes them (the input window, and it plus the horizon), a subset of what is accepted.
        values["maxItems"] = stamps["maxItems"] = manifest.input_size
        common.update(covariates)
    forms = [("start", start), ("timestamps", stamps)]
    series = {
        "anyOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "values", axis, *covariates],
                "properties": {**common, axis: schema},
            }
            for axis, schema in forms
        ]
    }
    levels = copy.deepcopy(schemas["ForecastRequest"]["properties"]["levels"])  # count and range as parsed
    levels["items"]["maximum"] = manifest.intervals.levels[-1]  # the highest level calibrated
    return {
        "horizon": {"type": "integer", "minimum": 1, "maximum": manifest.horizon},
        "levels": levels,
        "series": {"type": "array", "minItems": 1, "maxItems": settings.max_series_per_request, "items": series},
    }
