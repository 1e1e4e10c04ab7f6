"""Moments an event loop is about to idle, told by the code that knows to the code that can
use them.

The request scheduler knows when the loop will wait: its first request goes out alone and
the others wait for its answer or its grace (``SchedulerLimits.probe_grace_s``, 0.1 s by
default). The executor has work that wants such a moment when it is long enough: importing
what writing the dataset needs (pyarrow and pandas, ~0.3-0.45 s of CPU), which in a thread
on a busy loop slows every request the loop handles meanwhile (the two share the GIL).
Neither imports the other: the scheduler calls :func:`idle_ahead`, the executor listens with
:func:`on_idle_ahead`. :class:`IdleTimer` waits for idle time of the loop itself (the
first request's grace is measured with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable

logger = logging.getLogger("alambic")

_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Callable[[float], None]]] = (
    weakref.WeakKeyDictionary()
)


def on_idle_ahead(
    loop: asyncio.AbstractEventLoop, callback: Callable[[float], None]
) -> Callable[[], None]:
    """Call ``callback(seconds)`` (in the loop's thread) whenever ``loop`` is about to idle
    for up to ``seconds``, after which it may be busy again, and ``callback(0.0)`` when such a
    wait is over; returns the function that stops listening."""
    callbacks = _listeners.setdefault(loop, [])
    callbacks.append(callback)

    def stop() -> None:
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)

    return stop


def idle_ahead(seconds: float) -> None:
    """Tell the listeners of the running loop that it is about to wait for up to ``seconds``
    (for a reply), after which it may get busy; ``0`` says that the wait is over (earlier
    than announced, or now)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for callback in list(_listeners.get(loop, ())):
        try:
            callback(seconds)
        except Exception:  # a listener's failure is its own, never the caller's
            logger.debug("an idle-ahead listener failed", exc_info=True)


class IdleTimer:
    """Calls ``callback`` once the event loop has idled for ``seconds`` since the timer was
    made, or at the latest after ``cap`` seconds of wall time; :meth:`cancel` stops it. Made
    on the loop's thread, in a running loop.

    Idle time is counted in ticks of a tenth of ``seconds``: a tick counts when it came on
    time and the loop's thread used under half of it in CPU. A tick that came late (the
    thread computing, waiting for the GIL, or descheduled by a loaded machine) counts for
    nothing.

    The first request's grace is measured so. The time its own first call takes (lazy
    imports, building the client, the other rows reaching the scheduler meanwhile) does not
    count, so a refused connection is still seen by that request alone on a loaded machine,
    where 0.1 s of wall time could pass before it was even attempted. The cap keeps a loop
    that never idles from holding the others for longer than that."""

    __slots__ = ("_callback", "_cap_at", "_due", "_handle", "_idle", "_last", "_seconds", "_tick")

    def __init__(self, seconds: float, callback: Callable[[], None], cap: float) -> None:
        now = time.monotonic()
        self._seconds = seconds
        self._callback = callback
        self._tick = max(seconds / 10, 0.001)
        self._idle = 0.0
        self._last = (now, time.thread_time())
        self._cap_at = now + max(cap, seconds)
        self._due = now + self._tick
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self._tick, self._check
        )

    def _check(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        last, last_cpu = self._last
        tick = self._tick
        if now - self._due < tick / 2 and cpu - last_cpu < (now - last) / 2:
            self._idle += now - last
        if self._idle >= self._seconds - 1e-9 or now >= self._cap_at:
            self._handle = None
            self._callback()
            return
        self._last = (now, cpu)
        self._due = now + tick
        self._handle = asyncio.get_running_loop().call_later(tick, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


__all__ = ["IdleTimer", "idle_ahead", "on_idle_ahead"]
