"""Rate limits: the settings are read as `limits` strings (a bad one fails the start-up naming
the variable), each caller has its own count, series count by the number in a request, a refusal
says when to retry in Retry-After and RateLimit-*, and a refused request is answered before its
body is read or the application sees it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from api.access.keys import load_keys
from api.access.middleware import AccessMiddleware, PathPolicy
from api.access.ratelimit import Quota, RateLimiter, parse_limit, tighter
from forecast.errors import InvalidSetting, RateLimited, RequestTooLarge
from forecast.settings import Settings

KEY = "k" * 24


def limiter(requests: str | None = None, series: str | None = None) -> RateLimiter:
    made = RateLimiter.from_settings(Settings(rate_limit_requests=requests, rate_limit_series=series))
    assert made is not None
    return made


# --- the settings --------------------------------------------------------------------------


def test_no_limit_set_means_no_limiter() -> None:
    assert RateLimiter.from_settings(Settings()) is None
    assert RateLimiter.from_settings(Settings(rate_limit_requests=" ", rate_limit_series="")) is None


@pytest.mark.parametrize(
    ("value", "amount", "window_s"), [("50/second", 50, 1), ("3000 per minute", 3000, 60), ("5/3 seconds", 5, 3)]
)
def test_a_limit_is_a_limits_string(value: str, amount: int, window_s: int) -> None:
    item = parse_limit(value, "requests")
    assert item is not None and (item.amount, item.get_expiry()) == (amount, window_s)


@pytest.mark.parametrize(
    ("value", "kind", "says"),
    [
        ("fast", "requests", "FORECAST_RATE_LIMIT_REQUESTS='fast' is not a rate limit; write it as COUNT/UNIT"),
        ("10/second;100/minute", "series", "FORECAST_RATE_LIMIT_SERIES takes one limit, e.g. 50/second; found 2"),
        ("0/second", "requests", "FORECAST_RATE_LIMIT_REQUESTS='0/second' allows nothing; leave it unset"),
    ],
)
def test_a_bad_limit_fails_the_start_up_naming_the_setting(value: str, kind: str, says: str) -> None:
    with pytest.raises(InvalidSetting) as refused:
        parse_limit(value, kind)
    assert str(refused.value).startswith(says)


# --- counting ------------------------------------------------------------------------------


def test_requests_past_the_limit_are_refused_with_when_to_retry_and_other_callers_go_on() -> None:
    rates = limiter(requests="3/minute")

    async def run() -> tuple[list[Quota | None], RateLimited, Quota | None]:
        quotas = [await rates.take_request("key 'a'") for _ in range(3)]
        with pytest.raises(RateLimited) as refused:
            await rates.take_request("key 'a'")
        return quotas, refused.value, await rates.take_request("key 'b'")

    quotas, refused, other = asyncio.run(run())
    assert [q.remaining for q in quotas if q] == [2, 1, 0]
    assert all(q and q.limit == 3 and q.window_s == 60 and 0 < q.reset_s <= 60 for q in quotas)
    assert str(refused) == "key 'a' is over its limit of 3 requests per minute (FORECAST_RATE_LIMIT_REQUESTS); " + (
        f"retry in {refused.headers['Retry-After']} s"
    )
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "3" and refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
    assert refused.headers["RateLimit-Policy"] == '3;w=60;comment="requests"'
    assert other is not None and other.remaining == 2  # another caller's count is its own


def test_series_count_by_the_number_in_each_request() -> None:
    rates = limiter(series="10/minute")

    async def run() -> tuple[list[int], RateLimited, int]:
        left = [(await rates.take_series("key 'a'", count)).remaining for count in (4, 4)]  # type: ignore[union-attr]
        with pytest.raises(RateLimited) as refused:
            await rates.take_series("key 'a'", 4)  # 12 > 10
        last = await rates.take_series("key 'a'", 2)  # 10: still fits
        return left, refused.value, last.remaining if last else -1

    left, refused, last = asyncio.run(run())
    assert left == [6, 2] and last == 0
    assert "over its limit of 10 series per minute (FORECAST_RATE_LIMIT_SERIES)" in str(refused)
    # 4 series need more than the oldest hit to leave; after a window all of them have.
    assert refused.headers["Retry-After"] == "60" and refused.headers["RateLimit-Remaining"] == "2"
    assert refused.headers["RateLimit-Policy"] == '10;w=60;comment="series"'


def test_a_request_with_more_series_than_the_limit_is_too_large_not_retried() -> None:
    rates = limiter(series="10/minute")
    with pytest.raises(RequestTooLarge, match=r"11 series in one request, more than key 'a' may send per minute"):
        asyncio.run(rates.take_series("key 'a'", 11))
    assert asyncio.run(rates.take_series("key 'a'", 10)) is not None  # and it was not counted


def test_a_limit_that_is_not_set_counts_nothing() -> None:
    rates = limiter(requests="1/minute")
    assert asyncio.run(rates.take_series("key 'a'", 10_000)) is None


def test_the_headers_describe_the_quota_nearer_to_running_out() -> None:
    requests = Quota("requests", limit=100, remaining=50, reset_s=1, window_s=1)
    series = Quota("series", limit=1000, remaining=100, reset_s=1, window_s=1)
    assert tighter(requests, series) is series and tighter(series, requests) is series
    assert tighter(requests, None) is requests and tighter(None, None) is None


# --- before the body -----------------------------------------------------------------------


@dataclass
class Exchange:
    """One request through the middleware, with a receive that notes whether the body was read."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    body_read: bool = False
    app_called: bool = False


async def through(middleware: AccessMiddleware, headers: list[tuple[bytes, bytes]]) -> Exchange:
    exchange = Exchange()
    chunks: list[bytes] = []
    scope = {"type": "http", "method": "POST", "path": "/v1/forecast", "headers": headers, "client": ("10.0.0.7", 1)}

    async def receive() -> dict[str, Any]:
        exchange.body_read = True
        return {"type": "http.request", "body": b'{"model": "m"}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            exchange.status = message["status"]
            exchange.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        else:
            chunks.append(message.get("body", b""))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        exchange.app_called = True
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware.app = app
    await middleware(scope, receive, send)
    exchange.body = json.loads(b"".join(chunks))
    return exchange


def test_a_refused_request_is_answered_before_its_body_is_read() -> None:
    policy = PathPolicy(frozenset(), public_docs=True, public_metrics=False)
    keys = load_keys(f"dash:{KEY}")
    middleware = AccessMiddleware(lambda *_: None, policy, keys, limiter(requests="2/minute"))  # type: ignore[arg-type]
    auth = [(b"authorization", b"Bearer " + KEY.encode())]

    async def run() -> list[Exchange]:
        return [
            await through(middleware, []),
            await through(middleware, [(b"authorization", b"Bearer wrong-key-of-some-length")]),
            *[await through(middleware, auth) for _ in range(3)],
        ]

    no_key, wrong_key, first, second, third = asyncio.run(run())
    for refused, status in ((no_key, 401), (wrong_key, 401), (third, 429)):
        assert refused.status == status and not refused.body_read and not refused.app_called
        assert set(refused.body) == {"error", "message", "series_id"} and refused.body["series_id"] is None
    assert no_key.headers["www-authenticate"] == 'Bearer realm="forecast"'
    assert wrong_key.headers["www-authenticate"] == 'Bearer realm="forecast", error="invalid_token"'
    assert third.body["error"] == "rate_limited" and "key 'dash' is over its limit" in third.body["message"]
    assert int(third.headers["retry-after"]) >= 1 and third.headers["ratelimit-remaining"] == "0"
    # The admitted ones reached the application and carry where they stand.
    assert first.app_called and first.status == 200 and first.headers["ratelimit-remaining"] == "1"
    assert second.headers["ratelimit-remaining"] == "0" and second.headers["ratelimit-limit"] == "2"


def test_without_keys_each_client_address_has_its_own_count() -> None:
    policy = PathPolicy(frozenset(), public_docs=True, public_metrics=False)
    middleware = AccessMiddleware(lambda *_: None, policy, None, limiter(requests="1/minute"))  # type: ignore[arg-type]

    async def run() -> list[Exchange]:
        return [await through(middleware, []), await through(middleware, [])]

    first, second = asyncio.run(run())
    assert first.status == 200 and second.status == 429
    assert "client 10.0.0.7 is over its limit of 1 requests per minute" in second.body["message"]
