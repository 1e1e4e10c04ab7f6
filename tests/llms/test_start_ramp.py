"""A burst of requests leaves in waves, one wave per turn of the event loop (StartRamp)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from alambic.errors import ErrorKind
from alambic.llms import limits
from alambic.llms.limits import StartRamp
from alambic.llms.scheduler import RequestScheduler, SchedulerLimits
from alambic.utils.aio import run_loop


def _classify(error: BaseException) -> tuple[ErrorKind, float | None]:
    return ErrorKind.UNKNOWN, None


class TurnCounter:
    """Counts the turns of the running loop (a callback that re-schedules itself)."""

    def __init__(self) -> None:
        self.turn = 0
        self._stopped = False

    def start(self) -> None:
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        if not self._stopped:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


def test_within_a_turn_up_to_the_wave_size_start_at_once() -> None:
    async def main() -> tuple[list[bool], bool]:
        ramp = StartRamp(per_turn=3)
        answers = [ramp.admit() for _ in range(5)]
        waiting = [a for a in answers if a is not None]
        await asyncio.gather(*waiting)
        # a turn later the count starts again: no backlog, so the next one goes at once
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return [a is None for a in answers], ramp.admit() is None

    immediate, later = asyncio.run(main())
    assert immediate == [True, True, True, False, False]
    assert later


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_burst_through_the_scheduler_leaves_in_waves_in_order(
    monkeypatch: pytest.MonkeyPatch, loop: str
) -> None:
    """100 requests released at once (the executor's first rows): 10 start per turn, in the
    order they came, and the first ones are sent before the last ones start; on both event
    loops a run may use."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")  # a dependency wherever it installs (not on Windows)
    monkeypatch.setenv("ALAMBIC_EVENT_LOOP", loop)
    monkeypatch.setattr(limits, "STARTS_PER_TURN", 10)
    starts: list[tuple[int, int]] = []  # (request, turn)
    sent: list[tuple[int, int]] = []  # (request, how many had started by then)

    async def main() -> int:
        scheduler = RequestScheduler(
            SchedulerLimits(max_concurrency=500, probe_first=False), _classify
        )
        turns = TurnCounter()
        turns.start()

        def attempt_of(i: int) -> Callable[[], Awaitable[int]]:
            async def attempt() -> int:
                starts.append((i, turns.turn))
                await asyncio.sleep(0)  # the connection opens, the request is written
                sent.append((i, len(starts)))
                await asyncio.sleep(0.01)
                return i

            return attempt

        results = await asyncio.gather(*(scheduler.run(attempt_of(i)) for i in range(100)))
        turns.stop()
        assert results == list(range(100))
        return scheduler._ramp.deferred

    deferred = run_loop(main())
    assert deferred == 90
    assert [i for i, _ in starts] == list(range(100))
    per_turn: dict[int, int] = {}
    for _, turn in starts:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) == 10
    assert len(per_turn) == 10
    first_sent_after = dict(sent)[0]
    assert first_sent_after <= 20  # not after all 100 were started


def test_requests_one_after_another_never_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a burst (each answer starting the next request) the ramp adds no wait."""
    monkeypatch.setattr(limits, "STARTS_PER_TURN", 2)

    async def main() -> int:
        scheduler = RequestScheduler(SchedulerLimits(probe_first=False), _classify)

        async def attempt() -> str:
            await asyncio.sleep(0)
            return "ok"

        for _ in range(20):
            assert await scheduler.run(attempt) == "ok"
        return scheduler._ramp.deferred

    assert asyncio.run(main()) == 0


def test_a_cancelled_request_leaves_the_rest_of_its_wave_alone() -> None:
    async def main() -> tuple[list[str], bool]:
        ramp = StartRamp(per_turn=2)
        assert [ramp.admit(), ramp.admit()] == [None, None]  # this turn is full
        # a and b wait for the next turn, c and d for the one after
        waiters = {name: ramp.admit() for name in "abcd"}
        done: list[str] = []

        async def wait(name: str) -> None:
            waiter = waiters[name]
            assert waiter is not None
            await waiter
            done.append(name)

        tasks = {name: asyncio.create_task(wait(name)) for name in "abcd"}
        await asyncio.sleep(0)  # a and b are released; c and d are parked on theirs
        tasks["c"].cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        return done, tasks["c"].cancelled()

    done, cancelled = asyncio.run(main())
    assert cancelled
    assert done == ["a", "b", "d"]


def test_a_scheduler_bound_to_a_new_loop_gets_a_new_ramp() -> None:
    """A ramp's waiters belong to one loop: a later ``generate`` on a new loop starts fresh."""
    scheduler = RequestScheduler(SchedulerLimits(probe_first=False), _classify)

    async def one() -> object:
        async def attempt() -> str:
            return "ok"

        await scheduler.run(attempt)
        return scheduler._ramp

    first = asyncio.run(one())
    second = asyncio.run(one())
    assert first is not second
