"""Dynamic batching: series queued by concurrent requests run through the network together.

The contract (DESIGN.md): every item gets its future before it is queued and the future is
resolved exactly once on every path; the queue is bounded and a full queue fails fast; the
loop blocks for the first item, whose arrival on the monotonic clock opens the wait window,
then drains up to `max_batch_size` items; cancelled items are dropped before the model runs;
the model runs in the device's single inference thread; outputs are checked against inputs
in count, and a failure reaches every request of the batch, logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from forecast.errors import DeadlineExceeded, Overloaded, ShuttingDown
from forecast.serving.telemetry import BATCH_SIZE, COMPUTE_TIME, QUEUE_DEPTH, QUEUE_WAIT, REJECTED

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0  # what a refused client is told to wait (full queue, shutting down)


Item = TypeVar("Item")  # what one queued unit of work is (a series' input window)
Result = TypeVar("Result")  # what the batch function returns for one item

# Runs on the inference thread: a batch of items in, one result per item out, in order.
BatchFunction = Callable[[Sequence[Item]], Sequence[Result]]


@dataclass(slots=True)
class _Queued(Generic[Item, Result]):
    payload: Item
    future: asyncio.Future[Result]
    enqueued_at: float  # time.monotonic()
    deadline: float  # time.monotonic()


def _resolve(
    future: asyncio.Future[Result], *, result: Result | None = None, error: BaseException | None = None
) -> None:
    if future.done():  # cancelled by its request, or already answered
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


class DynamicBatcher(Generic[Item, Result]):
    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Result]],
        executor: Executor,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        queue_limit: int,
        labels: tuple[str, str] = ("", ""),
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_limit = queue_limit
        self._queue: deque[_Queued[Item, Result]] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._labels = labels
        # The labelled children, looked up once: `.labels()` on every request showed up in profiles.
        self._depth = QUEUE_DEPTH.labels(*labels)
        self._wait = QUEUE_WAIT.labels(*labels)
        self._batch_size = BATCH_SIZE.labels(*labels)
        self._compute = COMPUTE_TIME.labels(*labels)
        self._rejected = REJECTED.labels(*labels)

    @property
    def run_batch(self) -> Callable[[Sequence[Item]], Sequence[Result]]:
        """The batch function, for a call outside the queue (a warm-up on the inference thread)."""
        return self._run_batch

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self._labels}")

    async def stop(self) -> None:
        """Serve what is queued, then end the loop."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def submit(self, payloads: Sequence[Item], timeout_s: float) -> list[Result]:
        """Queue one request's series together (all or none) and wait for their forecasts."""
        if self._closing:
            raise ShuttingDown("the service is shutting down; retry on another instance", retry_after_s=RETRY_AFTER_S)
        if len(self._queue) + len(payloads) > self.queue_limit:
            self._rejected.inc(len(payloads))
            raise Overloaded(
                f"the model's queue is full ({len(self._queue)} series waiting, limit {self.queue_limit}); retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        items: list[_Queued[Item, Result]] = [_Queued(p, loop.create_future(), now, now + timeout_s) for p in payloads]
        self._queue.extend(items)
        self._depth.set(len(self._queue))
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            for item in items:  # the request failed or was cancelled: its other series are dropped
                if not item.future.done():
                    item.future.cancel()

    async def _next_batch(self) -> list[_Queued[Item, Result]]:
        while not self._queue:
            if self._closing:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        window_closes = self._queue[0].enqueued_at + self.max_wait_s
        while len(self._queue) < self.max_batch_size and not self._closing:
            remaining = window_closes - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        count = min(self.max_batch_size, len(self._queue))
        batch = [self._queue.popleft() for _ in range(count)]
        self._depth.set(len(self._queue))
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                return
            now = time.monotonic()
            live = []
            for item in batch:
                if item.future.done():
                    continue  # cancelled: its client is gone
                if now > item.deadline:
                    _resolve(
                        item.future,
                        error=DeadlineExceeded(f"waited {now - item.enqueued_at:.2f}s in the queue, past the deadline"),
                    )
                    continue
                live.append(item)
            if not live:
                continue
            for item in live:
                self._wait.observe(now - item.enqueued_at)
            self._batch_size.observe(len(live))
            started = time.perf_counter()
            try:
                outputs = await loop.run_in_executor(self._executor, self._run_batch, [item.payload for item in live])
                if len(outputs) != len(live):
                    raise RuntimeError(f"the model returned {len(outputs)} forecasts for {len(live)} series")
            except Exception as exc:
                if isinstance(exc, Overloaded):  # the inference process is restarting: one line, expected
                    logger.warning("batch of %d series refused on %s: %s", len(live), self._labels, exc)
                else:
                    logger.exception("batch of %d series failed on %s", len(live), self._labels)
                for item in live:
                    _resolve(item.future, error=exc)
                continue
            finally:
                self._compute.observe(time.perf_counter() - started)
            for item, output in zip(live, outputs, strict=True):
                _resolve(item.future, result=output)
