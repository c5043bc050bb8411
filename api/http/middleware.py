"""ASGI middleware: request ids with structured access logs, the request body size limit, and HEAD
answered as GET without its body."""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response, internal_error_response
from forecast.errors import RequestTooLarge

logger = logging.getLogger("forecast.access")
errors = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Every response carries X-Request-ID (the client's, or a new one); one JSON log line each."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")[:128]
        request_id = given or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette's ServerErrorMiddleware sits outside every user middleware and answers
            # a bare text/plain 500; answering here instead gives the 500 the envelope and the id.
            errors.exception(
                "unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"), request_id
            )
            if response_started:
                raise  # part of the response is on the wire: only closing the connection is left
            await internal_error_response(request_id)(scope, receive, send_with_id)
        finally:
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    json.dumps(
                        {
                            "request_id": request_id,
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "status": status,
                            "duration_ms": round(1000 * (time.perf_counter() - started), 2),
                            "key": scope["state"].get("api_key"),  # the key's name (api/access/middleware.py)
                        }
                    )
                )


class BodyLimitMiddleware:
    """413 for bodies over the limit, whether announced by Content-Length or streamed.

    A streamed (chunked) body is counted as the application reads it. Raising from `receive`
    would not do: FastAPI's body parsing turns any exception there into a 400. So the 413 is
    sent from `receive` itself, the application then sees a disconnect, and whatever it answers
    to that is dropped. uvicorn reads and discards the rest of the body (bounded by
    FORECAST_BODY_TIMEOUT_S), so a client that sends it all before reading still gets the 413.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return
        received, refused, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    if not started:  # a response already under way can only be cut short
                        await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the response
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # The application's reaction to the disconnect it was handed (Starlette's
            # ClientDisconnect from its body read): the 413 has answered, and letting this out
            # would log a false error and make uvicorn close the connection mid-upload.
            errors.debug("after the 413, the application raised", exc_info=True)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = RequestTooLarge(f"request body over {self.max_body_bytes} bytes (FORECAST_MAX_BODY_BYTES)")
        await error_response(refusal)(scope, receive, send)


class HeadAsGetMiddleware:
    """HEAD on any GET resource answers as GET does, headers only: HTTP requires both methods,
    and load balancers probe with HEAD. Innermost, so the access log and the key check see HEAD;
    a route without GET still answers 405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
