"""Deadlines of the request path (``alambic.utils.deadline``): asyncio.timeout's behaviour,
one timer per tick of deadlines instead of one per use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from alambic.utils import deadline as deadlines
from alambic.utils.deadline import TICKS_PER_SECOND, deadline, within

pytestmark = pytest.mark.skipif(not deadlines.SUPPORTED, reason="needs Task.cancelling (3.11)")


def _run_on(loop_name: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        return uvloop.run  # type: ignore[no-any-return]
    return asyncio.run


LOOPS = pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])


@LOOPS
def test_a_block_past_its_deadline_raises_timeout_error_soon_after(loop_name: str) -> None:
    async def main() -> tuple[float, bool]:
        started = time.monotonic()
        guard = deadline(0.1)
        with pytest.raises(TimeoutError):
            async with guard:
                await asyncio.sleep(5)
        return time.monotonic() - started, guard.expired

    took, expired = _run_on(loop_name)(main())
    assert expired
    # fires at the end of the tick the deadline falls in: at most 1/32 s late (plus the loop)
    assert 0.1 <= took < 0.1 + 1 / TICKS_PER_SECOND + 0.1


@LOOPS
def test_a_block_done_in_time_leaves_nothing_behind(loop_name: str) -> None:
    async def main() -> tuple[str, int, bool]:
        guard = deadline(0.05)
        async with guard:
            await asyncio.sleep(0)
        # the task lives on past the deadline: it must not be cancelled by it
        await asyncio.sleep(0.15)
        wheel = deadlines._wheel_of(asyncio.get_running_loop())
        waiting = sum(len(entries) for entries in wheel.ticks.values())
        return "still running", waiting, guard.expired

    assert _run_on(loop_name)(main()) == ("still running", 0, False)


@LOOPS
def test_a_cancellation_from_elsewhere_stays_a_cancellation(loop_name: str) -> None:
    async def main() -> str:
        async def guarded() -> None:
            async with deadline(10):
                await asyncio.sleep(5)

        task = asyncio.create_task(guarded())
        await asyncio.sleep(0.02)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return "cancelled"
        except TimeoutError:
            return "timed out"
        return "finished"

    assert _run_on(loop_name)(main()) == "cancelled"


def test_deadlines_of_the_same_tick_share_one_timer() -> None:
    async def main() -> tuple[int, list[int]]:
        loop = asyncio.get_running_loop()
        armed: list[float] = []
        call_at = loop.call_at

        def counting_call_at(when: float, *args: Any) -> asyncio.TimerHandle:
            armed.append(when)
            return call_at(when, *args)

        loop.call_at = counting_call_at  # type: ignore[method-assign,assignment]
        gate = asyncio.Event()

        async def one() -> str:
            async with deadline(30):
                await gate.wait()
            return "ok"

        tasks = [asyncio.create_task(one()) for _ in range(1_000)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks)
        wheel = deadlines._wheel_of(loop)
        return len(armed), [results.count("ok"), sum(map(len, wheel.ticks.values()))]

    timers, (done, left) = asyncio.run(main())
    assert done == 1_000
    assert left == 0
    assert 1 <= timers <= 2  # 1,000 deadlines set within the same 1/32 s (or across two)


def test_an_inner_deadline_times_out_alone() -> None:
    async def main() -> tuple[str, bool, bool]:
        outer, inner = deadline(5), deadline(0.05)
        async with outer:
            try:
                async with inner:
                    await asyncio.sleep(5)
            except TimeoutError:
                outcome = "inner timed out"
            else:
                outcome = "no timeout"
            await asyncio.sleep(0.1)  # still inside the outer one, which keeps running
        return outcome, inner.expired, outer.expired

    assert asyncio.run(main()) == ("inner timed out", True, False)


def test_within_returns_the_value_and_none_means_no_deadline() -> None:
    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    async def main() -> list[int]:
        return [await within(answer(), 1.0), await within(answer(), None)]

    assert asyncio.run(main()) == [42, 42]


def test_within_raises_timeout_error() -> None:
    async def main() -> None:
        await within(asyncio.sleep(5), 0.05)

    with pytest.raises(TimeoutError):
        asyncio.run(main())


def test_a_deadline_outside_a_task_is_refused() -> None:
    async def main() -> BaseException | None:
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[BaseException | None] = loop.create_future()

        def callback() -> None:  # a loop callback runs outside any task
            try:
                deadline(1).__aenter__().send(None)
            except BaseException as exc:
                seen.set_result(exc)
            else:
                seen.set_result(None)

        loop.call_soon(callback)
        return await seen

    error = asyncio.run(main())
    assert isinstance(error, RuntimeError)
    assert "inside a task" in str(error)
