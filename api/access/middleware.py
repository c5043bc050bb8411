"""Who may call what: the paths that need an API key and the scope each needs, the key check and
the requests/s limit, all before a request's body is read, so a refused request costs a header
look-up and a dictionary probe. The series/s limit needs the body's series count, so the
forecast route calls `limit_series` once it has parsed the request."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access.keys import KeyRing, KeyScope, load_keys
from api.access.ratelimit import Quota, RateLimiter, tighter
from api.errors import error_response
from forecast.errors import AccessDenied, AmbiguousCredentials, Forbidden, RateLimited, Unauthorized
from forecast.settings import Settings

logger = logging.getLogger(__name__)

REFUSED = Counter(
    "forecast_access_refused_total",
    "Requests refused before any work: no or a wrong key (unauthorized), a key without the scope "
    "(forbidden), over the requests or the series rate limit",
    ["reason"],
)
REALM = 'Bearer realm="forecast"'
# Liveness and readiness probes, and the dashboard's files (they hold no data; what they show
# comes from /v1, which needs a key).
_ALWAYS_OPEN = frozenset({"/", "/healthz", "/readyz", "/dashboard"})
# The paths a key of scope `forecast` may call: they forecast (or say a forecast's limits), and
# read nothing of the registry.
_FORECAST_PATHS = frozenset({"/v1/forecast", "/v1/backtest", "/v1/limits"})
_REASONS: dict[type[AccessDenied], str] = {
    AmbiguousCredentials: "ambiguous",
    Unauthorized: "unauthorized",
    Forbidden: "forbidden",
    RateLimited: "requests",
}


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """The scope a path needs, or None for an open one. Everything not named open needs a key,
    so a new route is closed until someone opens it."""

    docs_paths: frozenset[str]
    public_docs: bool
    public_metrics: bool

    @classmethod
    def of(cls, app: FastAPI, settings: Settings) -> PathPolicy:
        urls = (app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url, app.openapi_url)
        return cls(frozenset(url for url in urls if url), settings.public_docs, settings.public_metrics)

    def needed(self, path: str) -> KeyScope | None:
        if path in _ALWAYS_OPEN or path.startswith("/dashboard/"):
            return None
        if path == "/metrics":
            return None if self.public_metrics else KeyScope.READ  # it names the models and their traffic
        if path in self.docs_paths:
            return None if self.public_docs else KeyScope.FORECAST  # any valid key
        if path in _FORECAST_PATHS:
            return KeyScope.FORECAST
        return KeyScope.READ


# Whether this request presented a valid key: the OpenAPI document names the served models,
# their versions and horizons only to callers with one (api/http/openapi.py).
CALLER_HAS_KEY: ContextVar[bool] = ContextVar("caller_has_key", default=False)


def bearer_token(scope: Scope) -> str | None:
    """The KEY of `Authorization: Bearer KEY` (the scheme is case-insensitive), or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class AccessMiddleware:
    """401 without a valid key, 403 for a key without the scope, 429 over the requests/s limit;
    the limit's RateLimit-* headers on every limited response. The caller is written to the
    request's state: the key's name for the access log, the rate limits' caller for the route."""

    def __init__(self, app: ASGIApp, policy: PathPolicy, keys: KeyRing | None, limiter: RateLimiter | None) -> None:
        self.app = app
        self.policy = policy
        self.keys = keys
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        needed = self.policy.needed(scope["path"]) if scope["type"] == "http" else None
        if needed is None:
            if self.keys is not None and scope["type"] == "http" and scope["path"] in self.policy.docs_paths:
                presented = bearer_token(scope)  # open docs: a key is not needed, but it shows more
                CALLER_HAS_KEY.set(presented is not None and await self.keys.verify(presented) is not None)
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            caller = await self._caller(scope, needed, state)
            state["rate_caller"] = caller
            state["request_quota"] = await self.limiter.take_request(caller) if self.limiter else None
        except AccessDenied as exc:
            REFUSED.labels(_REASONS[type(exc)]).inc()
            await error_response(exc)(scope, receive, send)
            return
        if self.limiter is None:
            await self.app(scope, receive, send)
            return

        async def send_with_quota(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                quota = tighter(state.get("request_quota"), state.get("series_quota"))
                # A 429 from the route carries its own; one set of fields per response.
                if quota is not None and not any(name == b"ratelimit-limit" for name, _ in headers):
                    headers.extend((name.encode(), value.encode()) for name, value in quota.headers().items())
            await send(message)

        await self.app(scope, receive, send_with_quota)

    async def _caller(self, scope: Scope, needed: KeyScope, state: dict[str, Any]) -> str:
        if self.keys is None:
            return address_caller(scope.get("client"))
        if sum(name == b"authorization" for name, _ in scope.get("headers", ())) > 1:
            raise AmbiguousCredentials("the request has more than one Authorization header; send exactly one")
        presented = bearer_token(scope)
        if presented is None:
            raise Unauthorized(
                "this API needs a key: send it as Authorization: Bearer KEY", headers={"WWW-Authenticate": REALM}
            )
        key = await self.keys.verify(presented)
        if key is None:
            raise Unauthorized(
                "the API key is not valid: check it, or ask the operator for one",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        state["api_key"] = key.name  # the access log names the key, never its value
        CALLER_HAS_KEY.set(True)
        if not key.scope.grants(needed):
            raise Forbidden(
                f"the key {key.name!r} has scope {key.scope.value}, which allows POST /v1/forecast and /v1/backtest only; "
                f"this needs a key with scope {needed.value}",
                headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{needed.value}"'},
            )
        return f"key {key.name!r}"


def address_caller(client: tuple[str, int] | None) -> str:
    """A caller known by its address alone (no keys): the ASGI scope's client."""
    return f"client {client[0] if client else 'unknown'}"


def caller_of(request: Request) -> str:
    """Who sent the request, as the rate limits and the batcher's turns count callers: the API
    key's name, else the client's address (the proxy's, unless it is trusted to forward)."""
    caller: str | None = request.scope.get("state", {}).get("rate_caller")
    return caller if caller is not None else address_caller(request.scope.get("client"))


async def limit_series(request: Request, series_count: int) -> None:
    """The series/s check of POST /v1/forecast, once the body is parsed: RateLimited (429) over
    the limit, RequestTooLarge (413) for a request that alone exceeds it. Free without a limit."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None or limiter.series is None:
        return
    state = request.scope["state"]
    try:
        quota: Quota | None = await limiter.take_series(state["rate_caller"], series_count)
    except RateLimited:
        REFUSED.labels("series").inc()
        raise
    state["series_quota"] = quota


def install_access(app: FastAPI, settings: Settings) -> None:
    """Read the keys and limits (a bad value stops the start-up with one line) and put the
    middleware in place, unless the API is open and unlimited: then it costs nothing."""
    keys = load_keys(settings.api_keys.get_secret_value() if settings.api_keys else None)
    limiter = RateLimiter.from_settings(settings)
    app.state.rate_limiter = limiter
    if keys is None:
        logger.warning("FORECAST_API_KEYS is unset: /v1 answers anyone who can reach this port")
    else:
        logger.info(
            "%d API keys; /metrics %s, /docs %s",
            len(keys),
            "open" if settings.public_metrics else "needs a read key",
            "open" if settings.public_docs else "needs a key",
        )
        _document_bearer(app)
    if keys is not None or limiter is not None:
        app.add_middleware(AccessMiddleware, policy=PathPolicy.of(app, settings), keys=keys, limiter=limiter)


def _document_bearer(app: FastAPI) -> None:
    """Declare the Bearer scheme on /v1 in the OpenAPI document, so /docs offers 'Authorize'.
    It wraps whatever builds the document (installed before this), and the additions are
    idempotent, since that builder may hand out the same cached document each time."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        if "apiKey" not in schemes:
            schemes["apiKey"] = {"type": "http", "scheme": "bearer", "description": "an API key (FORECAST_API_KEYS)"}
            for path, operations in document.get("paths", {}).items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
