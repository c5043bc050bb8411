"""The Python client of the forecasting API, sync (`Client`) and async (`AsyncClient`).

A frame is cut into requests under the server's limits (read once from GET /v1/limits) and the
requests are sent concurrently, at most `concurrency` at a time. 429 and 503 (and a connection
that failed) are retried, waiting what `Retry-After` says plus jitter, or backing off
exponentially; no other 4xx is retried. Errors come back typed, with the server's message and
the series it names (`forecast.client.errors`)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pandas as pd

from forecast.client.errors import ForecastClientError, RequestTooLarge, Unavailable, error_for
from forecast.client.frames import Batch, FrameColumns, Limits, answer_frame, pack, series_payloads

RETRIED = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 8  # tries of one request in all
    first_delay_s: float = 0.5  # the backoff without Retry-After: doubling from here
    max_delay_s: float = 60.0
    jitter: float = 0.25  # up to this share of the delay added at random, so clients spread out

    def delay(self, attempt: int, retry_after: str | None) -> float:
        base = self.first_delay_s * 2 ** (attempt - 1)
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date: the backoff will do
                base = float(retry_after)
        base = min(max(base, 0.0), self.max_delay_s)
        return base * (1.0 + random.uniform(0.0, self.jitter))


@dataclass(frozen=True, slots=True)
class ForecastCall:
    """What one `forecast` call asks for, beside its series."""

    model: str
    horizon: int | None
    levels: tuple[float, ...]
    version: int | None
    alias: str | None

    def body(self, batch: Batch) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "levels": list(self.levels)}
        for key, value in (("horizon", self.horizon), ("version", self.version), ("alias", self.alias)):
            if value is not None:
                body[key] = value
        body["series"] = [payload.body for payload in batch.series]
        return body


def halves(batch: Batch) -> tuple[Batch, Batch]:
    middle = len(batch.series) // 2
    return Batch(series=batch.series[:middle]), Batch(series=batch.series[middle:])


def merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    return {**first, "forecasts": [*first["forecasts"], *second["forecasts"]]}


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _failure(response: httpx.Response) -> ForecastClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return error_for(response.status_code, body, response.headers.get("x-request-id"))


def _progress(total: int, enabled: bool) -> Callable[[int], None]:
    """A tqdm bar when asked for and installed; nothing otherwise."""
    if not enabled:
        return lambda _: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return lambda _: None
    bar = tqdm(total=total, unit="series")
    return bar.update


def _columns(
    id_col: str, time_col: str, value_col: str, past: Sequence[str], future: Sequence[str], static: Sequence[str]
) -> FrameColumns:
    return FrameColumns(id_col, time_col, value_col, tuple(past), tuple(future), tuple(static))


class Client:
    """Sync client: `Client(url, api_key=...)`; close it, or use it as a context manager."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout_s)
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self._limits: Limits | None = None
        self._lock = threading.Lock()
        self.retried: Counter[int] = Counter()  # retries by status (0: no answer), for a caller's logs

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                if attempt == self.retry.attempts:
                    raise Unavailable(f"{method} {path}: {exc}") from exc
                with self._lock:
                    self.retried[0] += 1
                time.sleep(self.retry.delay(attempt, None))
                continue
            if response.status_code < 400:
                return response.json()
            if response.status_code not in RETRIED or attempt == self.retry.attempts:
                raise _failure(response)
            with self._lock:
                self.retried[response.status_code] += 1
            time.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")  # the loop returns or raises

    def limits(self) -> Limits:
        with self._lock:
            if self._limits is None:
                self._limits = Limits.of(self._request("GET", "/v1/limits"), self.concurrency)
            return self._limits

    def models(self) -> list[dict[str, Any]]:
        """The registry's models, their versions and aliases (a key of scope `read`), every page."""
        listing: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = self._request("GET", _models_page(after))
            listing += page["models"]
            if (after := page.get("next_after")) is None:
                return listing

    def forecast(
        self,
        df: pd.DataFrame,
        *,
        model: str,
        horizon: int | None = None,
        levels: Sequence[float] = (),
        id_col: str = "series_id",
        time_col: str = "timestamp",
        value_col: str = "value",
        past_covariates: Sequence[str] = (),
        future_covariates: Sequence[str] = (),
        static_covariates: Sequence[str] = (),
        version: int | None = None,
        alias: str | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """Forecasts of every series of a long frame, as a long frame: `id_col`, `time_col`, the
        mean under the model's name, and `<model>-lo-<level>` / `<model>-hi-<level>`."""
        columns = _columns(id_col, time_col, value_col, past_covariates, future_covariates, static_covariates)
        call = ForecastCall(model, horizon, tuple(levels), version, alias)
        batches = pack(series_payloads(df, columns, self.limits()), self.limits())
        advance = _progress(sum(len(b.series) for b in batches), progress)

        def send(batch: Batch) -> dict[str, Any]:
            try:
                answer: dict[str, Any] = self._request("POST", "/v1/forecast", call.body(batch))
            except RequestTooLarge:
                if len(batch.series) == 1:
                    raise
                # over a bound the limits do not tell (the answer's size, which the model's
                # horizon decides): halve the request and send both halves
                first, second = halves(batch)
                return merged(send(first), send(second))
            advance(len(batch.series))
            return answer

        pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency))
        try:
            answers = list(pool.map(send, batches))
        finally:  # the first error stops the requests not yet sent
            pool.shutdown(wait=True, cancel_futures=True)
        return answer_frame(answers, columns, model, call.levels)

    def backtest(
        self,
        df: pd.DataFrame,
        *,
        model: str,
        horizon: int | None = None,
        origins: int | None = None,
        stride: int = 1,
        last_points: int | None = None,
        levels: Sequence[float] = (),
        id_col: str = "series_id",
        time_col: str = "timestamp",
        value_col: str = "value",
        version: int | None = None,
        alias: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/backtest on the frame's series in one request (its metrics are over all of
        them): the answer's JSON, metrics overall and per series."""
        columns = _columns(id_col, time_col, value_col, (), (), ())
        limits = self.limits()
        payloads = series_payloads(df, columns, limits)
        call = ForecastCall(model, horizon, tuple(levels), version, alias)
        body = call.body(Batch(series=payloads))
        body.update({"stride": stride, **({"origins": origins} if origins else {})})
        if last_points is not None:
            body["last_points"] = last_points
        answer: dict[str, Any] = self._request("POST", "/v1/backtest", body)
        return answer


class AsyncClient:
    """The same calls for asyncio: `async with AsyncClient(url) as client: await client.forecast(...)`."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 60.0,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=timeout_s)
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self._limits: Limits | None = None
        self.retried: Counter[int] = Counter()  # retries by status (0: no answer), for a caller's logs

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = await self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                if attempt == self.retry.attempts:
                    raise Unavailable(f"{method} {path}: {exc}") from exc
                self.retried[0] += 1
                await asyncio.sleep(self.retry.delay(attempt, None))
                continue
            if response.status_code < 400:
                return response.json()
            if response.status_code not in RETRIED or attempt == self.retry.attempts:
                raise _failure(response)
            self.retried[response.status_code] += 1
            await asyncio.sleep(self.retry.delay(attempt, response.headers.get("retry-after")))
        raise AssertionError("unreachable")

    async def limits(self) -> Limits:
        if self._limits is None:
            self._limits = Limits.of(await self._request("GET", "/v1/limits"), self.concurrency)
        return self._limits

    async def models(self) -> list[dict[str, Any]]:
        """The registry's models, their versions and aliases (a key of scope `read`), every page."""
        listing: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = await self._request("GET", _models_page(after))
            listing += page["models"]
            if (after := page.get("next_after")) is None:
                return listing

    async def forecast(
        self,
        df: pd.DataFrame,
        *,
        model: str,
        horizon: int | None = None,
        levels: Sequence[float] = (),
        id_col: str = "series_id",
        time_col: str = "timestamp",
        value_col: str = "value",
        past_covariates: Sequence[str] = (),
        future_covariates: Sequence[str] = (),
        static_covariates: Sequence[str] = (),
        version: int | None = None,
        alias: str | None = None,
        progress: bool = False,
    ) -> pd.DataFrame:
        """As `Client.forecast`."""
        columns = _columns(id_col, time_col, value_col, past_covariates, future_covariates, static_covariates)
        call = ForecastCall(model, horizon, tuple(levels), version, alias)
        limits = await self.limits()
        batches = pack(series_payloads(df, columns, limits), limits)
        advance = _progress(sum(len(b.series) for b in batches), progress)
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def send(batch: Batch) -> dict[str, Any]:
            try:
                async with gate:
                    answer: dict[str, Any] = await self._request("POST", "/v1/forecast", call.body(batch))
            except RequestTooLarge:
                if len(batch.series) == 1:
                    raise
                first, second = halves(batch)  # as in Client.forecast
                return merged(await send(first), await send(second))
            advance(len(batch.series))
            return answer

        try:
            async with asyncio.TaskGroup() as group:  # the first error cancels the others
                tasks = [group.create_task(send(batch)) for batch in batches]
        except* ForecastClientError as errors:
            raise errors.exceptions[0] from None
        return answer_frame([task.result() for task in tasks], columns, model, call.levels)


def _models_page(after: str | None) -> str:
    """GET /v1/models pages by name: the page after `after` (the first when None)."""
    return "/v1/models" if after is None else f"/v1/models?after={quote(after)}"
