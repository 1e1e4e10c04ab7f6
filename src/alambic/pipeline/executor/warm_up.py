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
        request scheduler's first request, alone for up to half a second, which the writer's
        imports fit in). The writer's imports go at the first idle tick; ``datasets`` (0.5 s
        of CPU, needed only once the run ends) at the next one after them, which against a
        slow API is the tail of the run: not while the loop keeps 2,000 requests in flight.
        Where the writer's imports were done within an announced wait, a burst of requests
        follows, then a lull before their first answers: there ``datasets`` waits for
        ``RESULT_IDLE_TICKS`` idle ticks in a row.
        """
        last = [time.monotonic(), time.thread_time()]
        quiet, quiet_ticks, waiting, result_after = [0.0], [0], [False], [1]
        handle: list[asyncio.TimerHandle] = []
        confirming: list[asyncio.TimerHandle] = []

        def idle_ahead(seconds: float) -> None:
            # told that the loop is about to wait (the first request's grace): nothing starts
            # at a quiet tick before the wait is over (a burst of requests may follow it),
            # and the writer's imports start within it, unless it is over at once (0: over)
            now = time.monotonic()
            waiting[0] = seconds > 0
            quiet[0] = now + max(seconds, 0.0)
            if waiting[0] and self.thread is None and not _outputs_imported():
                confirming[:] = [loop.call_later(IDLE_CONFIRM_S, confirm_idle)]

        def confirm_idle() -> None:
            # a fast server answered meanwhile and the loop is busy again: an import in a
            # thread now would slow every request (the quiet ticks decide instead)
            if waiting[0] and self.thread is None and not _outputs_imported():
                self._start(_warm_up_writer)
                result_after[0] = RESULT_IDLE_TICKS  # a burst follows, then maybe a lull

        def tick() -> None:
            now, cpu = time.monotonic(), time.thread_time()
            since = last[0]
            busy = (cpu - last[1]) / max(now - since, 1e-6)
            last[:] = [now, cpu]
            if _outputs_imported() or self._result_started:
                return
            # a tick measured (in part) during an announced wait says nothing of after it
            idle = busy < 0.5 and not self.busy() and since >= quiet[0]
            quiet_ticks[0] = quiet_ticks[0] + 1 if idle else 0
            if idle and self.thread is None:
                self._start(_warm_up_writer)
            elif quiet_ticks[0] >= result_after[0]:
                self._result_started = True
                self._start(_warm_up_result)
                return
            handle[:] = [loop.call_later(0.1, tick)]

        handle.append(loop.call_later(0.1, tick))
        stop_listening = on_idle_ahead(loop, idle_ahead)

        def stop() -> None:
            handle[-1].cancel()
            for pending in confirming:
                pending.cancel()
            stop_listening()

        return stop

    def start_now(self) -> None:
        """Import at once in a thread (while local models load: the loop will not be idle
        for long once a local engine computes, and an import then would take its cores)."""
        if self.thread is None and not _outputs_imported():
            self._result_started = True
            self._start(_warm_up_outputs)

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()


__all__ = ["IDLE_CONFIRM_S", "RESULT_IDLE_TICKS", "WarmUp"]
