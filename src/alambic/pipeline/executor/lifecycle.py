"""Around the loop: early imports, the idle-time warm-up of the writers, and Ctrl-C.

- SDKs the steps will import in ``load`` are imported in a daemon thread meanwhile
  validation, signatures and the run store go ahead.
- What writing the dataset needs (pyarrow, datasets: 2-3 s) is imported in a thread once
  the event loop is mostly idle, never while it is busy (the two would share the GIL).
- The first Ctrl-C stops reading rows and sending requests; work in flight finishes and is
  committed. The second cancels everything at once.
- While the loop runs, the garbage collector leaves alone the heap the run started with
  (:func:`steady_gc`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from alambic import settings
from alambic.utils.idle import on_idle_ahead

logger = logging.getLogger("alambic")


def prefetch_imports(steps: Iterable[Any]) -> None:
    """Import the modules the steps' ``load`` will need, in a daemon thread."""
    modules = {
        module for step in steps for module in step.prefetch_modules() if module not in sys.modules
    }
    if not modules:
        return

    def prefetch() -> None:
        for module in sorted(modules):
            with contextlib.suppress(Exception):  # load() reports a missing SDK properly
                importlib.import_module(module)

    threading.Thread(target=prefetch, name="alambic-prefetch", daemon=True).start()


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


GC_YOUNG_THRESHOLD = 100_000
"""Allocations between two collections of the youngest generation during a run (Python's
default is 700). The objects of a request in flight live as long as its reply takes: at
10,000, W7's young collections (every ~40 ms) found most of them still alive and moved them
on to be scanned again, 1.5-2.3 s of collector time in a 20,000-request run; at 100,000,
0.2-0.3 s (with the same peak memory)."""

_gc_lock = threading.Lock()
_gc_runs = [0]
_gc_saved: list[tuple[int, int, int]] = []


@contextlib.contextmanager
def steady_gc() -> Iterator[None]:
    """Keep the cyclic garbage collector off the run's hot path, and restore it afterwards.

    After imports and model loading the heap holds millions of long-lived objects (an API
    SDK alone brings thousands of classes), and every request allocates a few hundred
    containers, so Python's default schedule (a young collection every 700 allocations, a
    full one when enough survive) kept walking that heap: measured on W7 (10,000 rows, 2,000
    in flight), 2,400 collections and about a third of the client's CPU. The run freezes the
    heap it starts with (``gc.freeze``: never scanned until the run ends) and collects its
    young objects every 100,000 allocations instead of 700. Cycles are still collected.
    ``ALAMBIC_GC_TUNING=0`` turns this off. Runs overlapping in threads share one setting:
    the last to end restores the collector.
    """
    if not settings.gc_tuning():
        yield
        return
    with _gc_lock:
        _gc_runs[0] += 1
        if _gc_runs[0] == 1:
            threshold = gc.get_threshold()
            _gc_saved[:] = [threshold]
            gc.freeze()
            gc.set_threshold(max(threshold[0], GC_YOUNG_THRESHOLD), threshold[1], threshold[2])
    try:
        yield
    finally:
        with _gc_lock:
            _gc_runs[0] -= 1
            if _gc_runs[0] == 0:
                gc.set_threshold(*_gc_saved[0])
                gc.unfreeze()


class Interrupts:
    """Ctrl-C handling: the first stops new work, the second cancels every task."""

    def __init__(self) -> None:
        self.count = 0
        self.stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early = 0
        self._handover = threading.Lock()
        self.on_stop: list[Callable[[str], None]] = []
        """Called once with the reason when the run starts stopping (the run's budget
        refuses requests from then on, including those waiting for a slot or a retry)."""

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stopping = asyncio.Event()
        with self._handover:
            self._loop = loop
            for _ in range(self._early):  # Ctrl-C caught by the waiting thread before this
                loop.call_soon(self.on_ctrl_c)
            self._early = 0
        if threading.current_thread() is not threading.main_thread():
            return  # a run in a helper thread: the waiting thread hands Ctrl-C over
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, self.on_ctrl_c)

    def on_ctrl_c(self) -> None:
        """On the run's loop: the first stops new work, the second cancels every task."""
        self.count += 1
        if self.count == 1:
            self.stopping.set()
            self._notify("interrupted (Ctrl-C)")
            logger.warning(
                "Stopping: no new rows are read and no new request is sent; requests in "
                "flight finish and are saved. Press Ctrl-C again to exit at once."
            )
        elif self._loop is not None:
            for task in asyncio.all_tasks(self._loop):
                task.cancel()

    def ctrl_c_from_another_thread(self) -> None:
        """A Ctrl-C caught by the thread waiting for a run that has its loop in a helper
        thread (a run started from a notebook cell): handled on the run's loop."""
        with self._handover:
            loop = self._loop
            if loop is None:
                self._early += 1
                return
        with contextlib.suppress(RuntimeError):  # the loop has closed: the run is over
            loop.call_soon_threadsafe(self.on_ctrl_c)

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    def stop(self, reason: str) -> None:
        """Stop as a first Ctrl-C does, for ``reason`` (a run's budget is reached)."""
        if not self.stopping.is_set():
            logger.warning(
                "Stopping: %s. No new request is sent; requests in flight finish and are saved.",
                reason,
            )
        self.count = max(self.count, 1)
        self.stopping.set()
        self._notify(reason)

    def _notify(self, reason: str) -> None:
        for listener in self.on_stop:
            listener(reason)

    @property
    def stopped(self) -> bool:
        return self.stopping.is_set()


__all__ = ["GC_YOUNG_THRESHOLD", "Interrupts", "WarmUp", "prefetch_imports", "steady_gc"]
