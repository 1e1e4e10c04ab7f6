"""The idle-time warm-up of the writers: what writing the dataset needs (pyarrow and pandas
for the parquet files, ``datasets`` for the result: ~1 s of CPU together) is imported in a
thread once the event loop is mostly idle, never while it is busy (the two would share the
GIL), or at first need on the loop where it never idles.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable

from alambic.utils.idle import on_idle_ahead


def _outputs_imported() -> bool:
    return "datasets" in sys.modules


def _warm_up_writer() -> None:
    """Import what writing the rows needs (pyarrow pulls pandas on its first conversion)."""
    with contextlib.suppress(Exception):  # a real failure surfaces when the writer is used
        from alambic.utils.parquet import rows_to_table

        rows_to_table([{"warm": 1}])


def _warm_up_result() -> None:
    """Import what returning the dataset needs (only at the end of the run)."""
    with contextlib.suppress(Exception):
        import datasets  # noqa: F401


def _warm_up_outputs() -> None:
    _warm_up_writer()
    _warm_up_result()


IDLE_CONFIRM_S = 0.03
"""How long an announced wait must last before the writer's imports start in a thread: a
fast server's first reply (milliseconds) ends it and the loop is busy again, and the imports
then wait for a quiet tick as without the announcement."""

WRITER_IMPORTS_S = 0.25
"""The shortest announced wait that the writer's imports (pyarrow and pandas: ~0.3 s of CPU)
start in. In a shorter one (the first request's grace, 0.1 s by default) they would run on
into the burst of requests that follows it and slow it down: they wait for quiet ticks then,
which W7 has right after its burst (its first answers take 0.5 s)."""

RESULT_IDLE_TICKS = 3
"""Idle ticks in a row (100 ms each) before ``datasets`` is imported in a thread, after the
writer's imports were done within an announced wait. W7 (2,000 requests answering in
0.5-1.5 s) idles for a tick or two between its first burst and their answers, and an import
started then ran on into the busy loop (1.1-1.4 s of it). Elsewhere one idle tick will do
(a short run's tail is short: W5's lasts a few ticks)."""


class WarmUp:
    """Starts the writers' imports in a thread once the event loop is mostly idle."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self._result_started = False

    def busy(self) -> bool:
        """Whether the import thread is still running (writes then go off the loop)."""
        return self.thread is not None and self.thread.is_alive()

    def _start(self, target: Callable[[], None]) -> None:
        self.thread = threading.Thread(target=target, name="alambic-warm-up", daemon=True)
        self.thread.start()

    def watch(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Watch the loop; returns the function that stops watching.

        Where the loop is busy (a fast server), a second thread would only slow it down: the
        two share the GIL, and the loop then waits up to a switch interval for it after every
        socket operation (measured: -10% rows/s on W1). There the imports happen when first
        needed, on the loop, as one short stall. Idle means the loop thread used under half of
        a 100 ms tick's CPU, or that code about to wait said so (``alambic.utils.idle``: the
        request scheduler's first request, alone for its grace), for long enough that the
        writer's imports fit in (``WRITER_IMPORTS_S``). The writer's imports go at the first
        idle tick; ``datasets`` (0.5 s of CPU, needed only once the run ends) at the next one
        after them, which against a slow API is the tail of the run: not while the loop keeps
        2,000 requests in flight.
        Where the writer's imports were done within an announced wait, a burst of requests
        follows, then a lull before their first answers: there ``datasets`` waits for
        ``RESULT_IDLE_TICKS`` idle ticks in a row.
        """
        return _LoopWatch(self, loop).stop

    def start_now(self) -> None:
        """Import at once in a thread (while local models load: the loop will not be idle
        for long once a local engine computes, and an import then would take its cores)."""
        if self.thread is None and not _outputs_imported():
            self._result_started = True
            self._start(_warm_up_outputs)

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()


class _LoopWatch:
    """One run's watch of its loop for :class:`WarmUp` (see :meth:`WarmUp.watch`)."""

    def __init__(self, warm_up: WarmUp, loop: asyncio.AbstractEventLoop) -> None:
        self.warm_up = warm_up
        self.loop = loop
        self.last_time, self.last_cpu = time.monotonic(), time.thread_time()
        self.wait_ends = 0.0
        """When an announced wait ends (ticks measured before then say nothing of after)."""
        self.idle_ticks = 0
        """Idle ticks in a row."""
        self.result_after = 1
        """Idle ticks in a row before ``datasets``' import."""
        self.tick_handle = loop.call_later(0.1, self.tick)
        self.confirm_handle: asyncio.TimerHandle | None = None
        self.stop_listening = on_idle_ahead(loop, self.idle_ahead)

    def stop(self) -> None:
        self.tick_handle.cancel()
        if self.confirm_handle is not None:
            self.confirm_handle.cancel()
        self.stop_listening()

    def pending(self) -> bool:
        """Whether the writer's imports have yet to start."""
        return self.warm_up.thread is None and not _outputs_imported()

    def idle_ahead(self, seconds: float) -> None:
        """Told that the loop is about to wait (the first request's grace) for up to
        ``seconds``, or that the wait is over (0): nothing starts at a quiet tick before it
        ends (a burst of requests may follow it), and the writer's imports start within it,
        unless it is over at once or too short for them."""
        self.wait_ends = time.monotonic() + max(seconds, 0.0)
        if seconds >= WRITER_IMPORTS_S and self.pending():
            self.confirm_handle = self.loop.call_later(IDLE_CONFIRM_S, self.confirm_idle)

    def confirm_idle(self) -> None:
        # still waiting: if a fast server had answered meanwhile, the loop would be busy
        # again and an import in a thread would slow every request (quiet ticks decide then)
        if time.monotonic() < self.wait_ends and self.pending():
            self.warm_up._start(_warm_up_writer)
            self.result_after = RESULT_IDLE_TICKS  # a burst follows, then maybe a lull

    def tick(self) -> None:
        now, cpu = time.monotonic(), time.thread_time()
        since = self.last_time
        busy = (cpu - self.last_cpu) / max(now - since, 1e-6)
        self.last_time, self.last_cpu = now, cpu
        warm_up = self.warm_up
        if _outputs_imported() or warm_up._result_started:
            return
        idle = busy < 0.5 and not warm_up.busy() and since >= self.wait_ends
        self.idle_ticks = self.idle_ticks + 1 if idle else 0
        if idle and warm_up.thread is None:
            warm_up._start(_warm_up_writer)
        elif self.idle_ticks >= self.result_after:
            warm_up._result_started = True
            warm_up._start(_warm_up_result)
            return
        self.tick_handle = self.loop.call_later(0.1, self.tick)


__all__ = ["IDLE_CONFIRM_S", "RESULT_IDLE_TICKS", "WRITER_IMPORTS_S", "WarmUp"]
