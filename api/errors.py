"""The one place where library exceptions become HTTP responses, and the one shape of every
error body (`ErrorBody`). The lowest module of `api/`: access, HTTP and the runtime's transport
all answer errors through it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from forecast.errors import (
    EXCERPT_CHARS,
    AccessDenied,
    AmbiguousCredentials,
    ClientDisconnected,
    DeadlineExceeded,
    Forbidden,
    ForecastError,
    InvalidInput,
    InvalidName,
    NotFound,
    RateLimited,
    RegistryCorrupt,
    RequestTooLarge,
    Unauthorized,
    Unavailable,
    excerpt,
)

# An id in an error body is cut like the schemas bound a posted id (api/http/schemas.py).
MAX_ID_CHARS = 200
MAX_MESSAGE_CHARS = 1000


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable kind, e.g. invalid_input, not_found")
    message: str
    series_id: str | None = None
    detail: list[dict[str, Any]] | None = None


def error_body(
    kind: str, message: str, series_id: str | None = None, detail: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Every error response's body, shaped as `ErrorBody`: small whatever the input (the
    message is cut, an id is quoted as an excerpt) and always encodable as UTF-8."""
    shown_id = None if series_id is None else _bounded(series_id, MAX_ID_CHARS)
    body: dict[str, Any] = {"error": kind, "message": _bounded(message, MAX_MESSAGE_CHARS), "series_id": shown_id}
    if detail is not None:
        body["detail"] = detail
    return body


def _bounded(text: str, limit: int) -> str:
    """At most about `limit` characters, with lone surrogates escaped so that it encodes."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


logger = logging.getLogger(__name__)

# Most specific first: the first matching class decides the status.
_STATUS: list[tuple[type[ForecastError], int, str]] = [
    (RequestTooLarge, 413, "too_large"),
    (InvalidName, 422, "invalid_name"),
    (InvalidInput, 422, "invalid_input"),
    (NotFound, 404, "not_found"),
    (Unavailable, 503, "overloaded"),
    (DeadlineExceeded, 504, "deadline_exceeded"),
    (RegistryCorrupt, 500, "registry_corrupt"),
    (ClientDisconnected, 499, "client_disconnected"),  # nginx's code; nobody is listening
    (AmbiguousCredentials, 400, "ambiguous_credentials"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (RateLimited, 429, "rate_limited"),
]


@dataclass(frozen=True, slots=True)
class ErrorKind:
    status: int  # HTTP status code
    label: str  # the body's machine-readable `error`


def error_kind(exc: ForecastError) -> ErrorKind:
    for kind, status, label in _STATUS:
        if isinstance(exc, kind):
            return ErrorKind(status, label)
    return ErrorKind(500, "internal")


def error_response(exc: ForecastError) -> JSONResponse:
    kind = error_kind(exc)
    headers = {}
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, AccessDenied):  # the Bearer challenge, or Retry-After and RateLimit-*
        headers.update(exc.headers)
    return JSONResponse(
        status_code=kind.status, content=error_body(kind.label, str(exc), exc.series_id), headers=headers
    )


def internal_error_response(request_id: str) -> JSONResponse:
    """The 500 of an unexpected exception: the envelope, and nothing of the exception itself
    (the server log has it, under the same request id)."""
    message = f"internal error; the server log has the details under request id {request_id}"
    return JSONResponse(status_code=500, content=error_body("internal", message))


def _location(error: dict[str, Any]) -> list[int | str]:
    """A validation error's location; a part can be a key the client made up (an extra field),
    so string parts are cut short."""
    return [part if isinstance(part, int) else str(part)[:EXCERPT_CHARS] for part in error.get("loc", ())]


def _readable(error: dict[str, Any]) -> str:
    """'values[5] is 'x': Input should be a valid number' rather than pydantic's
    'body.series.0.values.5': inside a series (named in the message's prefix) the location is
    relative to it, and a scalar input is quoted so the user sees what was wrong."""
    parts = [part for part in _location(error) if part != "body"]
    if len(parts) >= 2 and parts[0] == "series" and isinstance(parts[1], int):
        parts = parts[2:]
    location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".")
    given = error.get("input")
    if location and isinstance(given, str | int | float):
        location += f" is {excerpt(given) if isinstance(given, str) else repr(given)}"
    return f"{location}: {error.get('msg')}" if location else str(error.get("msg"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ForecastError)
    async def _library_error(request: Request, exc: ForecastError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        series_id = _series_id_of(exc.body, errors[0]) if errors else None
        message = "; ".join(_readable(e) for e in errors[:5])
        detail = [{"loc": _location(e), "msg": e.get("msg"), "type": e.get("type")} for e in errors[:20]]
        prefix = f"series {excerpt(series_id)}: " if series_id else ""
        return JSONResponse(status_code=422, content=error_body("invalid_request", prefix + message, series_id, detail))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code,
            content=error_body("http", str(exc.detail)),
            headers=getattr(exc, "headers", None),
        )


def _series_id_of(body: object, error: dict[str, object]) -> str | None:
    """Name the series a validation error is about, when the body got that far."""
    location = list(error.get("loc", ()))  # type: ignore[call-overload]
    if len(location) >= 3 and location[:2] == ["body", "series"] and isinstance(location[2], int):
        try:
            return str(body["series"][location[2]]["id"])  # type: ignore[index]
        except (TypeError, KeyError, IndexError):
            return f"#{location[2]}"
    return None
