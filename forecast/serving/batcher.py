"""Dynamic batching: series queued by concurrent requests run through the network together.

The contract (DESIGN.md): every item gets its future before it is queued and the future is
resolved exactly once on every path; the queue is bounded and a full queue fails fast; the
loop blocks for the first item, whose arrival on the monotonic clock opens the wait window,
then drains up to `max_batch_size` items; cancelled items are dropped before the model runs;
the model runs in the device's single inference thread; outputs are checked against inputs
in count, and a failure reaches every request of the batch, logged once.

Fairness: each caller (an API key, else a client address) has its own queue, and a batch is
drawn from the callers' queues in turn, one series each, so a caller with one series waits
for at most the batch that is running, however many thousands another caller keeps queued.
Each caller may hold at most `caller_limit` queued series, and the whole queue `queue_limit`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

from forecast.errors import DeadlineExceeded, InferenceUnavailable, Overloaded, ShuttingDown
from forecast.serving.telemetry import BATCH_SIZE, COMPUTE_TIME, QUEUE_DEPTH, QUEUE_WAIT, REJECTED

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0  # what a refused client is told to wait (full queue, shutting down)

# The caller of a batcher used without one (a warm-up, a bulk job in process).
ANYONE = ""


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
        caller_limit: int | None = None,
        labels: tuple[str, str] = ("", ""),
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.queue_limit = queue_limit
        self.caller_limit = min(queue_limit, caller_limit or queue_limit)
        # Each caller's series in arrival order; the callers in the order their turn comes.
        self._queues: OrderedDict[str, deque[_Queued[Item, Result]]] = OrderedDict()
        self._queued = 0
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
        return self._queued

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

    def check_room(self, count: int, caller: str = ANYONE) -> None:
        """Overloaded (503 + Retry-After) unless `count` more series of `caller` fit the queue:
        checked before a request is prepared, so a refused one costs no preparation."""
        if self._closing:
            raise ShuttingDown("the service is shutting down; retry on another instance", retry_after_s=RETRY_AFTER_S)
        if self._queued + count > self.queue_limit:
            self._rejected.inc(count)
            raise Overloaded(
                f"the model's queue is full ({self._queued} series waiting, limit {self.queue_limit}); retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        held = len(self._queues.get(caller, ()))
        if held + count > self.caller_limit:
            self._rejected.inc(count)
            raise Overloaded(
                f"this client already has {held} series waiting for the model; at most {self.caller_limit} may wait "
                "per client (FORECAST_QUEUE_LIMIT_PER_CLIENT): send the next request when one is answered",
                retry_after_s=RETRY_AFTER_S,
            )

    async def submit(self, payloads: Sequence[Item], timeout_s: float, caller: str = ANYONE) -> list[Result]:
        """Queue one request's series together (all or none) and wait for their forecasts."""
        self.check_room(len(payloads), caller)
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        items: list[_Queued[Item, Result]] = [_Queued(p, loop.create_future(), now, now + timeout_s) for p in payloads]
        queue = self._queues.get(caller)
        if queue is None:
            queue = self._queues[caller] = deque()  # a new caller's turn comes after those waiting
        queue.extend(items)
        self._queued += len(items)
        self._depth.set(self._queued)
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            for item in items:  # the request failed or was cancelled: its other series are dropped
                if not item.future.done():
                    item.future.cancel()

    async def _next_batch(self) -> list[_Queued[Item, Result]]:
        while not self._queued:
            if self._closing:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        window_closes = min(queue[0].enqueued_at for queue in self._queues.values()) + self.max_wait_s
        while self._queued < self.max_batch_size and not self._closing:
            remaining = window_closes - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        batch = self._take(min(self.max_batch_size, self._queued))
        self._depth.set(self._queued)
        return batch

    def _take(self, count: int) -> list[_Queued[Item, Result]]:
        """`count` series, one from each caller's queue in turn; whoever was not served last
        begins the next batch."""
        batch: list[_Queued[Item, Result]] = []
        while len(batch) < count:
            if len(self._queues) == 1:  # the common case: no one to take turns with
                caller, queue = next(iter(self._queues.items()))
                batch.extend(queue.popleft() for _ in range(count - len(batch)))
                if not queue:
                    del self._queues[caller]
                break
            for caller in list(self._queues):
                queue = self._queues[caller]
                batch.append(queue.popleft())
                if queue:
                    self._queues.move_to_end(caller)
                else:
                    del self._queues[caller]
                if len(batch) == count:
                    break
        self._queued -= len(batch)
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
                if isinstance(exc, InferenceUnavailable):  # the inference process is restarting: one line, expected
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
