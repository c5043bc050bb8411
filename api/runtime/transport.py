"""Transport limits that uvicorn lacks: header and body deadlines, a send timeout for clients
that stop reading, a header size bound, a connection cap that closes idle connections first,
and an in-flight request cap that spares the probes.

uvicorn's httptools protocol (the one it picks when httptools is installed, as here) has a
keep-alive timer and nothing else: no deadline for headers or bodies, and no header size bound
(`h11_max_incomplete_event_size` applies to the slower h11 protocol only). Its
`limit_concurrency` counts open connections as well as requests, so a few hundred half-open
connections would answer every request 503, the liveness probe included. So a small subclass
of its protocol adds the limits at the connection, where they must be enforced before the
application sees a request, and `InFlightLimit` caps the requests inside.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from api.errors import error_body, error_response
from forecast.errors import Overloaded
from forecast.settings import Settings

# Cheap, constant-cost endpoints an orchestrator and Prometheus rely on: a busy server must not be
# restarted for failing its liveness probe, nor go dark while it is overloaded.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# After a refusal, how long the server keeps reading (and dropping) what the client still sends
# before closing: closing with unread input sends a TCP reset, which can destroy the refusal
# before the client reads it (nginx's lingering close does the same).
LINGER_S = 2.0

# Orders connections by when they last became idle; a counter, not the loop's clock, whose
# millisecond ticks tie the many connections a burst opens.
_IDLE_SINCE = itertools.count()

REFUSED = Counter(
    "forecast_http_refused_total",
    "Connections and requests refused by a transport limit (api/runtime/transport.py)",
    ["reason"],
)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    header_timeout_s: float
    body_timeout_s: float
    keep_alive_timeout_s: float
    send_timeout_s: float
    max_header_bytes: int
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TransportLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            keep_alive_timeout_s=settings.keep_alive_timeout_s,
            send_timeout_s=settings.send_timeout_s,
            max_header_bytes=settings.max_header_bytes,
            max_connections=settings.max_connections,
        )


def raw_response(status: int, label: str, message: str, extra_headers: bytes = b"") -> bytes:
    """A complete `Connection: close` response with the JSON error envelope, for refusals made
    before (or instead of) the application's own response."""
    body = json.dumps(error_body(label, message)).encode()
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n" % len(body)
    return STATUS_LINE[status] + head + extra_headers + b"\r\n" + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, a header size bound and a connection cap.

    One timer per connection: the header deadline from the opening (or from a keep-alive
    request's first byte) to the end of the headers, then the body deadline to the end of the
    body; between requests uvicorn's own keep-alive timer runs. A timer is cheap (one
    `call_later` per request); a per-read idle timer would let a byte-a-second client stay.
    """

    limits: ClassVar[TransportLimits]

    @classmethod
    def bound(cls, limits: TransportLimits) -> type[LimitedHttpProtocol]:
        """uvicorn builds its protocol from a class; this one carries the limits."""
        return type("LimitedHttpProtocol", (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keep_alive_timeout_s  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._header_bytes = 0
        self._refused = False
        self.idle_since = next(_IDLE_SINCE)

    # --- the connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a request is closed at the header deadline.
        self._arm(self.limits.header_timeout_s, "header_timeout")
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_write()
        super().connection_lost(exc)

    # The transport calls these when its unsent data crosses 64 KiB and falls back to 16 KiB.
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.limits.send_timeout_s, self._write_stalled)

    def resume_writing(self) -> None:
        self._disarm_write()
        super().resume_writing()

    def _disarm_write(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None

    def _write_stalled(self) -> None:
        self._write_deadline = None
        REFUSED.labels("send_timeout").inc()
        # The client stopped reading: nothing more can reach it, so the unsent rest is dropped
        # and the response's task, waiting to write, sees a disconnect and frees its slot.
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: read and drop
        counting = self._awaiting_headers
        if counting:
            self._header_bytes += len(data)
            if self._deadline is None:  # a keep-alive request's first byte starts its header deadline
                self._arm(self.limits.header_timeout_s, "header_timeout")
        super().data_received(data)
        # Headers still incomplete after this read: httptools buffers them, so they are bounded
        # here, at most one read (uvloop's: 256 KiB) past the limit. Headers that end within a
        # read are measured exactly in on_headers_complete.
        if counting and self._awaiting_headers and self._header_bytes > self.limits.max_header_bytes:
            self._refuse_headers()

    def send_400_response(self, msg: str) -> None:
        """The parser's refusals (malformed framing, smuggling attempts) in the JSON envelope
        every other answer has, not uvicorn's text/plain."""
        self.transport.write(raw_response(400, "bad_request", f"malformed HTTP request: {msg}"))
        self.transport.close()

    def _between_requests(self) -> bool:
        """No response is owed: none was asked for, or the last one is complete."""
        return (self.cycle is None or self.cycle.response_complete) and not self.pipeline

    def is_idle(self) -> bool:
        """Between requests, or still receiving a request's headers: nothing is lost by closing."""
        return self._between_requests() and not self.transport.is_closing()

    def _make_room(self) -> None:
        idle = [c for c in self.connections if isinstance(c, LimitedHttpProtocol) and c is not self and c.is_idle()]
        if not idle:
            message = f"over {self.limits.max_connections} open connections (FORECAST_MAX_CONNECTIONS)"
            self._refuse(raw_response(503, "overloaded", message, b"retry-after: 1\r\n"), "connection_limit")
            return
        # The longest idle goes first; a half-open connection's clock does not restart when it
        # trickles in another byte, so slow senders go before clients that just connected.
        oldest = min(idle, key=lambda connection: connection.idle_since)
        REFUSED.labels("connection_evicted").inc()
        oldest.transport.close()

    # --- the parser's callbacks ---------------------------------------------------------------

    # After a refusal the parser may still call back for the rest of a read: those calls are
    # dropped, so no application task starts and nothing else is written.

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._awaiting_headers, self._header_bytes = False, 0
        head_bytes = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if head_bytes > self.limits.max_header_bytes:
            self._refuse_headers()
            return
        super().on_headers_complete()
        self._arm(self.limits.body_timeout_s, "body_timeout")

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._awaiting_headers = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.idle_since = next(_IDLE_SINCE)
        super().on_response_complete()

    # --- deadlines and refusals ---------------------------------------------------------------

    def _arm(self, delay_s: float, reason: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, self._expired, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, reason: str) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._refused:
            return
        if reason == "header_timeout":
            if self._header_bytes == 0:
                REFUSED.labels("idle_timeout").inc()
                self.transport.close()  # nothing of a request arrived: nobody to answer
                return
            message = f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s"
            answer = raw_response(408, "request_timeout", message + " (FORECAST_HEADER_TIMEOUT_S)")
            self._refuse(answer if self._between_requests() else None, reason)
            return
        cycle = self.cycle
        if self.pipeline or cycle is None or cycle.response_started:
            self._refuse(None, reason)  # another response is (or this one is) on the wire: just close
            return
        # The application waits for the body: it gets a disconnect and its response is dropped,
        # so the 408 is the only response written.
        cycle.disconnected = True
        cycle.message_event.set()
        message = f"the request's body did not arrive within {self.limits.body_timeout_s:g} s"
        self._refuse(raw_response(408, "request_timeout", message + " (FORECAST_BODY_TIMEOUT_S)"), reason)

    def _refuse_headers(self) -> None:
        if self.transport.is_closing():
            return  # the parser refused the request already (uvicorn's 400)
        message = f"request line and headers over {self.limits.max_header_bytes} bytes (FORECAST_MAX_HEADER_BYTES)"
        answer = raw_response(431, "headers_too_large", message) if self._between_requests() else None
        self._refuse(answer, "headers_too_large")

    def _refuse(self, response: bytes | None, reason: str) -> None:
        """Write the refusal, stop sending, and close once the client does or after LINGER_S;
        without a response (one is owed to an earlier request), close at once."""
        REFUSED.labels(reason).inc()
        self._refused = True
        self._disarm()
        if response is None:
            self.transport.close()
            return
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


class InFlightLimit:
    """503 + Retry-After beyond `max_requests` requests in flight, except for PROBE_PATHS.

    It counts requests, not connections, so idle keep-alive and half-open connections (bounded
    by the header deadline and the connection cap) never refuse a real request."""

    def __init__(self, app: ASGIApp, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_requests:
            REFUSED.labels("request_limit").inc()
            refusal = Overloaded(
                f"over {self.max_requests} requests in flight (FORECAST_MAX_CONCURRENT_REQUESTS); retry shortly"
            )
            await error_response(refusal)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
