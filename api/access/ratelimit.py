"""Rate limits per caller (an API key, or a client address when there are no keys): requests per
window, and series per window, the series of forecast requests, counted with `limits`.

The strategy is the moving window: each hit is stamped and counts until it is one window old,
so no caller gets more than the limit in any window, even across a boundary (a fixed window lets
twice the limit through around one, and a sliding counter only estimates). It holds one stamp
per unit in memory, a few kilobytes per caller at the rates a forecasting API sees. The storage
is this process's memory, so each server process counts on its own; a shared storage such as
`async+redis://host:6379` (limits.aio.storage.storage_from_string) would make the limits
cluster-wide, at the cost of a round trip per request. The asyncio flavour of `limits` keeps
that swap from blocking the event loop.

Responses carry the limit in the fields of draft-ietf-httpapi-ratelimit-headers-07:
RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (seconds) and RateLimit-Policy
(`5;w=3;comment="requests"`), the separate form most clients and proxies read; a refusal adds
Retry-After.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from forecast.errors import InvalidSetting, RateLimited, RequestTooLarge
from forecast.settings import Settings

RATE_LIMIT_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-Policy")
_SETTINGS = {"requests": "FORECAST_RATE_LIMIT_REQUESTS", "series": "FORECAST_RATE_LIMIT_SERIES"}


logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Quota:
    """Where a caller stands against one limit after a request."""

    kind: str  # "requests" or "series"
    limit: int
    remaining: int
    reset_s: int  # until the oldest counted hit leaves the window and frees its share
    window_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f'{self.limit};w={self.window_s};comment="{self.kind}"',
        }


def tighter(first: Quota | None, second: Quota | None) -> Quota | None:
    """The quota nearer to running out, the one a client must pace itself by."""
    if first is None or second is None:
        return first or second
    return second if second.remaining * first.limit < first.remaining * second.limit else first


def parse_limit(value: str | None, kind: str) -> RateLimitItem | None:
    """One `limits` string ("50/second", "3000 per 5 minutes"), or None when unset or empty."""
    text = (value or "").strip()
    if not text:
        return None
    setting = _SETTINGS[kind]
    try:
        items = parse_many(text)
    except ValueError:
        raise InvalidSetting(
            f"{setting}={text[:40]!r} is not a rate limit; write it as COUNT/UNIT, e.g. 50/second or 3000/minute"
        ) from None
    if len(items) != 1:
        raise InvalidSetting(f"{setting} takes one limit, e.g. 50/second; found {len(items)}")
    if items[0].amount < 1:
        raise InvalidSetting(f"{setting}={text!r} allows nothing; leave it unset for no limit")
    return items[0]


def _share(item: RateLimitItem | None, workers: int) -> RateLimitItem | None:
    """One worker's share of a limit (at least one): the kernel spreads connections over the
    workers, so the shares add up to about the limit."""
    if item is None:
        return None
    return type(item)(max(1, item.amount // workers), item.multiples, item.namespace)


def _shared_storage(uri: str) -> Storage:
    text = uri if uri.startswith("async+") else f"async+{uri}"
    try:
        storage = storage_from_string(text)
    except Exception as exc:  # an unknown scheme, a missing client library
        raise InvalidSetting(f"FORECAST_RATE_LIMIT_STORAGE={uri[:60]!r}: {str(exc)[:200]}") from None
    if not isinstance(storage, Storage):
        raise InvalidSetting(f"FORECAST_RATE_LIMIT_STORAGE={uri[:60]!r} is not a storage the server can share")
    return storage


def _per(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"


class RateLimiter:
    """The configured limits and the counts of every caller against them."""

    def __init__(
        self, requests: RateLimitItem | None, series: RateLimitItem | None, storage: Storage | None = None
    ) -> None:
        self.requests = requests
        self.series = series
        self._window = MovingWindowRateLimiter(storage or MemoryStorage())

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        """None when neither limit is set: then nothing is counted. With a shared storage every
        process counts in it; without one, each of N workers (counting in its own memory) allows
        1/N of each limit, so that the service as a whole allows what the setting says."""
        requests = parse_limit(settings.rate_limit_requests, "requests")
        series = parse_limit(settings.rate_limit_series, "series")
        if not (requests or series):
            return None
        if settings.rate_limit_storage:
            return cls(requests, series, _shared_storage(settings.rate_limit_storage))
        workers = max(1, settings.workers)
        if workers > 1:
            requests, series = _share(requests, workers), _share(series, workers)
            logger.warning(
                "rate limits count in each worker's memory: each of the %d workers allows %s (set "
                "FORECAST_RATE_LIMIT_STORAGE to a shared store for exact limits)",
                workers,
                " and ".join(
                    f"{item.amount} {kind} per {_per(item)}"
                    for kind, item in (("requests", requests), ("series", series))
                    if item
                ),
            )
        return cls(requests, series)

    async def take_request(self, caller: str) -> Quota | None:
        return None if self.requests is None else await self._take(self.requests, "requests", caller, 1)

    async def take_series(self, caller: str, count: int) -> Quota | None:
        if self.series is None:
            return None
        if count > self.series.amount:  # it would never pass: retrying cannot help, splitting can
            raise RequestTooLarge(
                f"{count} series in one request, more than {caller} may send per {_per(self.series)} "
                f"({self.series.amount}, {_SETTINGS['series']}); send fewer series per request"
            )
        return await self._take(self.series, "series", caller, count)

    async def _take(self, item: RateLimitItem, kind: str, caller: str, cost: int) -> Quota:
        allowed = await self._window.hit(item, kind, caller, cost=cost)
        stats = await self._window.get_window_stats(item, kind, caller)
        reset_s = max(0, math.ceil(stats.reset_time - time.time()))
        quota = Quota(kind, item.amount, max(0, stats.remaining), reset_s, item.get_expiry())
        if allowed:
            return quota
        # The oldest hit leaving frees one request; `cost` series may need more hits to leave,
        # and every hit counted now has left after one window.
        retry_s = max(1, reset_s if cost == 1 else quota.window_s)
        raise RateLimited(
            f"{caller} is over its limit of {item.amount} {kind} per {_per(item)} ({_SETTINGS[kind]}); "
            f"retry in {retry_s} s",
            headers={"Retry-After": str(retry_s), **quota.headers()},
        )
