"""The dynamic batcher against a fake model: batch formation, ordering, failures fanned out to the
right requests, cancellation, deadlines, the bounded queue and stop.

The fake is a plain function run in a real one-thread executor, like the device's inference
thread. Nothing waits on the clock: the fake blocks inside a batch on a `threading.Event` (the
gate) while a test queues more work, and every test checks on the way out that each future the
event loop created was resolved exactly once and nothing was reported to the loop's exception
handler.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import forecast.serving.batcher as batcher_module
from forecast.errors import DeadlineExceeded, Overloaded, ShuttingDown
from forecast.serving.batcher import DynamicBatcher
from forecast.serving.pipeline import WindowForecast, window_forecast
from forecast.serving.requests import Window

WAIT_S = 5.0  # bound on every wait; a correct batcher never comes near it
GENEROUS_TIMEOUT_S = 1e6  # a request deadline no test reaches
HUGE_WAIT_MS = 1e9  # a batching window no test outlives
INPUT_SIZE, FEATURES, HORIZON = 4, 2, 3
DEFAULT_SETTINGS: dict[str, Any] = {"max_batch_size": 4, "max_wait_ms": 0.0, "queue_limit": 64}


# ---- the fake model ---------------------------------------------------------------------------


class ModelCrash(RuntimeError):
    """What the fake raises for a poisoned batch."""


def series(*series_ids: int) -> list[Window]:
    """One input window per id, the id written into every value of its history."""
    return [
        Window(
            history=np.full(INPUT_SIZE, series_id, dtype=np.float32),
            features=np.zeros((INPUT_SIZE, FEATURES), dtype=np.float32),
        )
        for series_id in series_ids
    ]


def ids_of(outputs: Sequence[WindowForecast]) -> list[int]:
    """The ids the fake echoed back, in the order the request received them."""
    ids = []
    for output in outputs:
        assert output.mean.shape == (1, HORIZON), "one window's answer is one row"
        assert np.all(output.mean == output.mean[0, 0]), "one forecast mixes several series"
        ids.append(int(output.mean[0, 0]))
    return ids


class FakeModel:
    """Echoes each series' id as its forecast and records every batch it is given.

    `hold()` closes the gate: the next batch blocks inside the model (so the loop is busy and the
    queue fills deterministically) until `release()`. `fail_on` poisons the batch holding that id;
    `short_on` makes that batch return one forecast too few.
    """

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()  # a batch entered the model while the gate was closed
        self._gate = threading.Event()
        self._gate.set()
        self.fail_on: int | None = None
        self.short_on: int | None = None

    def hold(self) -> None:
        self.started.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    @property
    def seen(self) -> list[int]:
        return [series_id for batch in self.batches for series_id in batch]

    @property
    def batch_sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]

    def __call__(self, inputs: Sequence[Window]) -> list[WindowForecast]:
        ids = [int(payload.history[0]) for payload in inputs]
        self.batches.append(ids)
        self.started.set()
        if not self._gate.wait(WAIT_S):
            raise TimeoutError("the test never opened the gate")
        if self.fail_on in ids:
            raise ModelCrash(f"poisoned batch {ids}")
        outputs = [window_forecast(mean=np.full(HORIZON, payload.history[0]), spread=1.0) for payload in inputs]
        if self.short_on in ids:
            outputs.pop()
        return outputs


@pytest.fixture
def fake() -> FakeModel:
    return FakeModel()


@pytest.fixture
def executor(fake: FakeModel) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fake-inference")
    yield pool
    fake.release()  # never leave the inference thread blocked behind a failed test
    pool.shutdown(wait=True)


# ---- the harness ------------------------------------------------------------------------------


class TrackedFuture(asyncio.Future):  # type: ignore[type-arg]
    """A future that counts how often it was resolved, and attempts to resolve it again."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self.resolutions = 0
        self.late_attempts = 0

    def _count(self) -> None:
        if self.done():
            self.late_attempts += 1
        else:
            self.resolutions += 1

    def set_result(self, result: Any) -> None:
        self._count()
        super().set_result(result)

    def set_exception(self, exception: Any) -> None:
        self._count()
        super().set_exception(exception)

    def cancel(self, msg: Any = None) -> bool:
        cancelled = super().cancel(msg=msg)
        self.resolutions += int(cancelled)
        return cancelled


def track_futures(loop: asyncio.AbstractEventLoop) -> list[TrackedFuture]:
    """Make `loop.create_future()` (what the batcher's items use) hand out tracked futures."""
    created: list[TrackedFuture] = []

    def create_future() -> TrackedFuture:
        future = TrackedFuture(loop=loop)
        created.append(future)
        return future

    loop.create_future = create_future  # type: ignore[method-assign]
    return created


def assert_each_resolved_once(futures: list[TrackedFuture]) -> None:
    assert futures, "the harness tracked no futures"
    for future in futures:
        assert future.done(), f"a future was never resolved: {future!r}"
        assert future.resolutions == 1, f"resolved {future.resolutions} times: {future!r}"
        assert future.late_attempts == 0, f"set again after it was done: {future!r}"
        assert not future._log_traceback, f"an exception nobody retrieved: {future!r}"


Scenario = Callable[[DynamicBatcher], Awaitable[None]]


def serve(scenario: Scenario, fake: FakeModel, executor: ThreadPoolExecutor, **settings: Any) -> None:
    """Run `scenario` against a started batcher on a fresh event loop, then stop the batcher and
    check that every future was resolved exactly once and the loop reported no error."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futures = track_futures(loop)
        loop_errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
        batcher = DynamicBatcher(fake, executor, **(DEFAULT_SETTINGS | settings))
        batcher.start()
        try:
            await asyncio.wait_for(scenario(batcher), WAIT_S)
        finally:
            fake.release()
            await asyncio.wait_for(batcher.stop(), WAIT_S)
        assert loop_errors == []
        assert_each_resolved_once(futures)

    asyncio.run(main())


def request(
    batcher: DynamicBatcher, *series_ids: int, timeout_s: float = GENEROUS_TIMEOUT_S, caller: str = ""
) -> asyncio.Task[Any]:
    return asyncio.ensure_future(batcher.submit(series(*series_ids), timeout_s=timeout_s, caller=caller))


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until `condition` holds (it depends on the loop alone, not on time)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def queued(
    batcher: DynamicBatcher, *series_ids: int, timeout_s: float = GENEROUS_TIMEOUT_S, caller: str = ""
) -> asyncio.Task[Any]:
    """A request whose series are all in the queue when this returns."""
    depth = batcher.depth
    task = request(batcher, *series_ids, timeout_s=timeout_s, caller=caller)
    await until(lambda: batcher.depth == depth + len(series_ids))
    return task


async def hold_inference(batcher: DynamicBatcher, fake: FakeModel, *gate_ids: int) -> asyncio.Task[Any]:
    """Occupy the inference thread with a batch (series 0 unless told) blocked on the gate; the
    queue is empty when this returns, and everything queued next waits until `fake.release()`."""
    fake.hold()
    task = request(batcher, *(gate_ids or (0,)))
    assert await asyncio.to_thread(fake.started.wait, WAIT_S), "the gate batch never reached the model"
    assert batcher.depth == 0
    return task


# ---- batch formation --------------------------------------------------------------------------


def test_queued_series_run_in_batches_of_at_most_max_batch_size(fake: FakeModel, executor: ThreadPoolExecutor) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        requests = [await queued(batcher, series_id) for series_id in range(1, 11)]
        fake.release()
        assert ids_of(await gate) == [0]
        assert [ids_of(await task) for task in requests] == [[series_id] for series_id in range(1, 11)]
        assert fake.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]

    serve(scenario, fake, executor, max_batch_size=4)


def test_max_batch_size_one_runs_one_series_per_forward(fake: FakeModel, executor: ThreadPoolExecutor) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        several = await queued(batcher, 1, 2, 3)
        single = await queued(batcher, 4)
        fake.release()
        await gate
        assert ids_of(await several) == [1, 2, 3]
        assert ids_of(await single) == [4]
        assert fake.batches == [[0], [1], [2], [3], [4]]

    serve(scenario, fake, executor, max_batch_size=1, max_wait_ms=HUGE_WAIT_MS)


def test_later_arrivals_join_the_first_batch_which_runs_as_soon_as_it_is_full(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        first = await queued(batcher, 1)
        second = await queued(batcher, 2, 3)
        for _ in range(50):  # give the loop every chance to run a partial batch early
            await asyncio.sleep(0)
        assert fake.batches == [], "a batch ran before the window closed or the batch filled"
        last = await queued(batcher, 4)
        # Full: it runs now, not when the (practically endless) window closes.
        assert [ids_of(await task) for task in (first, second, last)] == [[1], [2, 3], [4]]
        assert fake.batches == [[1, 2, 3, 4]]

    serve(scenario, fake, executor, max_batch_size=4, max_wait_ms=HUGE_WAIT_MS)


class FakeClock:
    """Stands in for the batcher's monotonic clock so a test can move time by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The batcher's monotonic clock, moved by hand (asyncio's own clock is left alone)."""
    fake_clock = FakeClock()
    fake_time = SimpleNamespace(monotonic=fake_clock.monotonic, perf_counter=time.perf_counter)
    monkeypatch.setattr(batcher_module, "time", fake_time)
    return fake_clock


WINDOW_S = 60.0  # on the fake clock; a batch that really waited this long would time the test out


def test_wait_window_closes_relative_to_the_first_arrival_not_the_last(
    fake: FakeModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        first = await queued(batcher, 1)  # opens the window: it closes WINDOW_S from now
        clock.now += WINDOW_S / 2
        second = await queued(batcher, 2)  # inside the window: the batch keeps waiting
        for _ in range(50):
            await asyncio.sleep(0)
        assert fake.batches == []
        clock.now += WINDOW_S / 2 + 1.0
        # Past the first arrival's window; had the window restarted at this arrival the batch
        # would wait another WINDOW_S real seconds and the test would time out.
        third = await queued(batcher, 3)
        assert [ids_of(await task) for task in (first, second, third)] == [[1], [2], [3]]
        assert fake.batches == [[1, 2, 3]]

    serve(scenario, fake, executor, max_batch_size=8, max_wait_ms=WINDOW_S * 1000)


def test_wait_window_counts_from_the_first_arrival_even_while_the_model_was_busy(
    fake: FakeModel, executor: ThreadPoolExecutor, clock: FakeClock
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake, *range(100, 108))  # a full batch: no window
        first = await queued(batcher, 1)
        clock.now += WINDOW_S + 1.0
        second = await queued(batcher, 2)  # its own window would close WINDOW_S from now
        fake.release()
        await gate
        # The first series already waited out the window behind the busy model: its batch runs
        # at once with whatever has joined, without a fresh window for the later arrival.
        assert [ids_of(await task) for task in (first, second)] == [[1], [2]]
        assert fake.batches[1:] == [[1, 2]]

    serve(scenario, fake, executor, max_batch_size=8, max_wait_ms=WINDOW_S * 1000)


# ---- ordering ---------------------------------------------------------------------------------


def test_each_request_gets_the_forecasts_of_its_own_series_in_its_own_order(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    sent = {
        "a": [103, 101, 102],
        "b": [205, 201, 204, 202, 203],
        "c": [301],
        "d": [402, 401],
        "e": [507, 503, 506, 501, 502, 505, 504],
    }

    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        tasks = {name: await queued(batcher, *ids) for name, ids in sent.items()}
        fake.release()
        await gate
        received = {name: ids_of(await task) for name, task in tasks.items()}
        assert received == sent
        # The batches really mixed requests and split them across forwards.
        assert all(size <= 4 for size in fake.batch_sizes)
        assert any(len({series_id // 100 for series_id in batch}) > 1 for batch in fake.batches)

    serve(scenario, fake, executor, max_batch_size=4)


def test_ordering_holds_when_requests_arrive_concurrently_without_a_gate(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        sent = [[1000 * request_id + offset for offset in range(request_id % 5 + 1)] for request_id in range(1, 31)]
        received = await asyncio.gather(*(batcher.submit(series(*ids), timeout_s=GENEROUS_TIMEOUT_S) for ids in sent))
        assert [ids_of(outputs) for outputs in received] == sent
        assert sorted(fake.seen) == sorted(series_id for ids in sent for series_id in ids)

    serve(scenario, fake, executor, max_batch_size=8, max_wait_ms=1.0, queue_limit=1000)


# ---- failures fanned out ----------------------------------------------------------------------


def test_model_exception_reaches_every_request_of_its_batch_and_no_other(
    fake: FakeModel, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail_on = 1

    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        poisoned = [await queued(batcher, 1, 2), await queued(batcher, 3, 4)]
        healthy = [await queued(batcher, 5, 6), await queued(batcher, 7, 8)]
        fake.release()
        await gate
        errors = [await asyncio.gather(task, return_exceptions=True) for task in poisoned]
        assert all(isinstance(error[0], ModelCrash) for error in errors)
        assert errors[0][0] is errors[1][0]  # the model's own exception, not a rewording
        assert [ids_of(await task) for task in healthy] == [[5, 6], [7, 8]]
        assert fake.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
        assert ids_of(await batcher.submit(series(9), timeout_s=GENEROUS_TIMEOUT_S)) == [9]  # still serving

    with caplog.at_level(logging.ERROR, logger="forecast.serving.batcher"):
        serve(scenario, fake, executor, max_batch_size=4)
    failures = [record for record in caplog.records if record.name == "forecast.serving.batcher"]
    assert len(failures) == 1, "a failed batch is logged once, not once per request"
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is ModelCrash


def test_request_split_across_a_failed_and_a_healthy_batch_fails_and_the_others_are_served(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    fake.fail_on = 1

    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        split = await queued(batcher, 1, 2, 3, 4, 5)  # 1 and 2 in the poisoned batch
        neighbour = await queued(batcher, 6)
        fake.release()
        await gate
        with pytest.raises(ModelCrash):
            await split
        assert ids_of(await neighbour) == [6]
        # The failed request's series still queued when it failed are dropped, not computed.
        assert 5 not in fake.seen

    serve(scenario, fake, executor, max_batch_size=2)


def test_wrong_number_of_forecasts_fails_every_request_of_the_batch(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    fake.short_on = 1

    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        short = [await queued(batcher, 1, 2), await queued(batcher, 3), await queued(batcher, 4)]
        after = await queued(batcher, 5)
        fake.release()
        await gate
        for task in short:
            with pytest.raises(RuntimeError, match="returned 3 forecasts for 4 series"):
                await task
        assert ids_of(await after) == [5]
        assert ids_of(await batcher.submit(series(6, 7), timeout_s=GENEROUS_TIMEOUT_S)) == [6, 7]

    serve(scenario, fake, executor, max_batch_size=4)


# ---- cancellation -----------------------------------------------------------------------------


def test_request_cancelled_while_queued_is_dropped_before_the_model_runs(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        before = await queued(batcher, 1)
        gone = await queued(batcher, 2, 3)
        after = await queued(batcher, 4)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        fake.release()
        await gate
        assert ids_of(await before) == [1]
        assert ids_of(await after) == [4]
        assert fake.batches == [[0], [1, 4]]
        assert ids_of(await batcher.submit(series(5), timeout_s=GENEROUS_TIMEOUT_S)) == [5]

    serve(scenario, fake, executor, max_batch_size=4)


def test_request_cancelled_while_its_batch_runs_is_not_answered_twice(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        fake.hold()
        gone = await queued(batcher, 1, 2)
        stays = request(batcher, 3)  # fills the batch: it runs at once with all three series
        assert await asyncio.to_thread(fake.started.wait, WAIT_S)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        fake.release()
        assert ids_of(await stays) == [3]
        assert fake.batches == [[1, 2, 3]]

    serve(scenario, fake, executor, max_batch_size=3, max_wait_ms=HUGE_WAIT_MS)


# ---- deadlines --------------------------------------------------------------------------------


def test_series_past_its_deadline_in_the_queue_gets_deadline_exceeded_and_is_not_run(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        late = await queued(batcher, 1, 2, timeout_s=0.0)
        patient = await queued(batcher, 3)
        queued_at = time.monotonic()
        while time.monotonic() <= queued_at:  # the deadline is now strictly in the past
            pass
        fake.release()
        await gate
        with pytest.raises(DeadlineExceeded, match="past the deadline"):
            await late
        assert ids_of(await patient) == [3]
        assert fake.batches == [[0], [3]]

    serve(scenario, fake, executor, max_batch_size=4)


# ---- bounded queue ----------------------------------------------------------------------------


def test_full_queue_rejects_a_request_at_once_and_whole(fake: FakeModel, executor: ThreadPoolExecutor) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        first = await queued(batcher, 1, 2)
        overflow = request(batcher, 3, 4)  # 2 + 2 > 3: none of its series may be queued
        await until(overflow.done)  # answered without waiting for the busy model
        with pytest.raises(Overloaded) as rejected:
            await overflow
        assert not isinstance(rejected.value, ShuttingDown)
        assert rejected.value.retry_after_s > 0
        assert "queue is full" in str(rejected.value)
        assert batcher.depth == 2
        fits = await queued(batcher, 5)  # exactly the limit
        with pytest.raises(Overloaded):
            await batcher.submit(series(6), timeout_s=GENEROUS_TIMEOUT_S)
        fake.release()
        await gate
        assert ids_of(await first) == [1, 2]
        assert ids_of(await fits) == [5]
        assert 3 not in fake.seen and 4 not in fake.seen and 6 not in fake.seen
        assert ids_of(await batcher.submit(series(7, 8, 9), timeout_s=GENEROUS_TIMEOUT_S)) == [7, 8, 9]

    serve(scenario, fake, executor, max_batch_size=4, queue_limit=3)


# ---- fairness between callers -----------------------------------------------------------------


def test_a_small_caller_rides_the_next_batch_behind_a_bulk_callers_backlog(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        bulk = [await queued(batcher, *range(100 * r + 1, 100 * r + 9), caller="bulk") for r in range(3)]
        small = await queued(batcher, 999, caller="small")
        fake.release()
        await gate
        assert ids_of(await small) == [999]
        assert 999 in fake.batches[1], "the small caller waited for more than the batch that was running"
        assert [ids_of(await task) for task in bulk] == [list(range(100 * r + 1, 100 * r + 9)) for r in range(3)]
        bulk_order = [i for i in fake.seen if i not in (0, 999)]
        assert bulk_order == sorted(bulk_order), "one caller's series ran out of their arrival order"

    serve(scenario, fake, executor, max_batch_size=4)


def test_batches_take_turns_between_callers_and_whoever_waited_starts_the_next(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        a = await queued(batcher, 11, 12, 13, 14, caller="a")
        b = await queued(batcher, 21, 22, 23, 24, caller="b")
        c = await queued(batcher, 31, 32, caller="c")
        fake.release()
        await gate
        await asyncio.gather(a, b, c)
        assert fake.batches[1:] == [[11, 21, 31], [12, 22, 32], [13, 23, 14], [24]]

    serve(scenario, fake, executor, max_batch_size=3)


def test_one_caller_may_hold_at_most_its_share_of_the_queue(fake: FakeModel, executor: ThreadPoolExecutor) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        mine = await queued(batcher, 1, 2, 3, caller="greedy")
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(series(4), timeout_s=GENEROUS_TIMEOUT_S, caller="greedy")
        assert "per client" in str(refused.value) and refused.value.retry_after_s > 0
        batcher.check_room(3, "other")  # others still find room
        theirs = await queued(batcher, 5, 6, 7, caller="other")
        fake.release()
        await gate
        assert ids_of(await mine) == [1, 2, 3] and ids_of(await theirs) == [5, 6, 7]
        assert 4 not in fake.seen

    serve(scenario, fake, executor, max_batch_size=4, queue_limit=8, caller_limit=3)


# ---- stop -------------------------------------------------------------------------------------


def test_stop_serves_what_is_queued_before_returning_then_refuses_work(
    fake: FakeModel, executor: ThreadPoolExecutor
) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        waiting = [await queued(batcher, 1, 2), await queued(batcher, 3, 4, 5)]
        stopping = asyncio.ensure_future(batcher.stop())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not stopping.done(), "stop returned while series were still queued"
        with pytest.raises(ShuttingDown) as refused:
            await batcher.submit(series(6), timeout_s=GENEROUS_TIMEOUT_S)
        assert refused.value.retry_after_s > 0
        fake.release()
        await stopping
        assert sorted(fake.seen) == [0, 1, 2, 3, 4, 5]  # all served by the time stop returned
        assert ids_of(await gate) == [0]
        assert [ids_of(await task) for task in waiting] == [[1, 2], [3, 4, 5]]
        with pytest.raises(ShuttingDown):
            await batcher.submit(series(7), timeout_s=GENEROUS_TIMEOUT_S)
        assert 6 not in fake.seen and 7 not in fake.seen

    serve(scenario, fake, executor, max_batch_size=4)


def test_stop_does_not_wait_out_an_open_window(fake: FakeModel, executor: ThreadPoolExecutor) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        lone = await queued(batcher, 1)  # the batch is not full and the window practically endless
        await batcher.stop()
        assert ids_of(await lone) == [1]
        assert fake.batches == [[1]]

    serve(scenario, fake, executor, max_batch_size=4, max_wait_ms=HUGE_WAIT_MS)


def test_stop_without_queued_work_returns(fake: FakeModel, executor: ThreadPoolExecutor) -> None:
    async def scenario(batcher: DynamicBatcher) -> None:
        assert ids_of(await batcher.submit(series(1), timeout_s=GENEROUS_TIMEOUT_S)) == [1]
        await batcher.stop()
        assert batcher.depth == 0

    serve(scenario, fake, executor)


# ---- every path at once -----------------------------------------------------------------------


def test_every_future_is_resolved_once_across_mixed_outcomes(fake: FakeModel, executor: ThreadPoolExecutor) -> None:
    fake.fail_on = 20

    async def scenario(batcher: DynamicBatcher) -> None:
        gate = await hold_inference(batcher, fake)
        served = await queued(batcher, 10, 11)
        poisoned = await queued(batcher, 20, 21)  # 10, 11, 20, 21 share the poisoned batch
        cancelled = await queued(batcher, 30, 31)
        late = await queued(batcher, 40, timeout_s=0.0)
        fine = await queued(batcher, 50, 51, 52)
        overflow = request(batcher, *range(60, 70))
        queued_at = time.monotonic()
        while time.monotonic() <= queued_at:
            pass
        cancelled.cancel()
        fake.release()
        await gate
        outcomes = await asyncio.gather(served, poisoned, cancelled, late, fine, overflow, return_exceptions=True)
        kinds = [type(outcome) for outcome in outcomes]
        assert kinds[:2] == [ModelCrash, ModelCrash]
        assert kinds[2:4] == [asyncio.CancelledError, DeadlineExceeded]
        assert isinstance(outcomes[4], list) and ids_of(outcomes[4]) == [50, 51, 52]
        assert kinds[5] is Overloaded
        # The cancelled and the late series leave only 50 of their batch to run.
        assert fake.batches == [[0], [10, 11, 20, 21], [50], [51, 52]]

    serve(scenario, fake, executor, max_batch_size=4, queue_limit=12)
