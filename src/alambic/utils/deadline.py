"""Timeouts for the request path that cost a dictionary entry instead of a timer each.

``async with deadline(seconds):`` behaves as ``asyncio.timeout(seconds)``: when the time is
up the task is cancelled, and the block raises :class:`TimeoutError` (a cancellation from
elsewhere stays a cancellation). The difference is the timer. ``asyncio.timeout`` arms one
loop timer per use and disarms it on the way out; a request in flight used two (the
attempt's in the scheduler, the read timeout in the lean transport), and at 2,000 requests a
second those timers were 5-6% of the client's CPU (W7's profile). Here the deadlines that end
in the same 1/32 s share one timer, armed when the first of them is set, and leaving a block
only removes its entry from a dictionary. A deadline fires up to 1/32 s late, which no
timeout of a request in seconds notices.

On Python 3.10, whose tasks cannot tell their own cancellations from others
(``Task.cancelling``), :func:`within` falls back to ``asyncio.wait_for``; :func:`deadline`
needs 3.11.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

TICKS_PER_SECOND = 32
"""Deadlines ending within the same 1/TICKS_PER_SECOND s share a timer."""

SUPPORTED = hasattr(asyncio.Task, "cancelling")
"""Whether :func:`deadline` works here (Python >= 3.11)."""


class _Wheel:
    """The deadlines of one event loop, by the tick they end in."""

    __slots__ = ("ticks",)

    def __init__(self) -> None:
        self.ticks: dict[int, dict[Deadline, None]] = {}

    def add(self, loop: asyncio.AbstractEventLoop, entry: Deadline, when: float) -> int:
        tick = int(when * TICKS_PER_SECOND) + 1
        entries = self.ticks.get(tick)
        if entries is None:
            entries = self.ticks[tick] = {}
            loop.call_at(tick / TICKS_PER_SECOND, self._fire, tick)
        entries[entry] = None
        return tick

    def discard(self, entry: Deadline, tick: int) -> None:
        entries = self.ticks.get(tick)
        if entries is not None:
            entries.pop(entry, None)

    def _fire(self, tick: int) -> None:
        for entry in self.ticks.pop(tick, {}):
            entry._expire()


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()


def _wheel_of(loop: asyncio.AbstractEventLoop) -> _Wheel:
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = _Wheel()
    return wheel


class Deadline:
    """The context manager :func:`deadline` returns (use it once)."""

    __slots__ = ("_cancelling", "_expired", "_seconds", "_task", "_tick", "_wheel")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._tick: int | None = None
        self._expired = False

    @property
    def expired(self) -> bool:
        """Whether the time ran out (the block was then cancelled)."""
        return self._expired

    async def __aenter__(self) -> Deadline:
        if self._seconds is None:
            return self
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._wheel = _wheel_of(loop)
        self._tick = self._wheel.add(loop, self, loop.time() + self._seconds)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tick is None:
            return
        if not self._expired:
            self._wheel.discard(self, self._tick)
            return
        # ours if no other cancellation came in meanwhile, as asyncio.timeout decides
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()


def deadline(seconds: float | None) -> Deadline:
    """A block that raises :class:`TimeoutError` after ``seconds`` (``None``: never)."""
    return Deadline(seconds)


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """``await awaitable``, raising :class:`TimeoutError` after ``seconds``."""
    if SUPPORTED:
        async with Deadline(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


__all__ = ["SUPPORTED", "TICKS_PER_SECOND", "Deadline", "deadline", "within"]
