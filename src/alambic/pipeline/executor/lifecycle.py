"""Around the loop: early imports, Ctrl-C, and the garbage collector.

- SDKs the steps will import in ``load`` are imported in a daemon thread meanwhile
  validation, signatures and the run store go ahead. (What writing the dataset needs is
  imported when the loop idles: :mod:`alambic.pipeline.executor.warm_up`.)
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
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from alambic import settings

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


__all__ = ["GC_YOUNG_THRESHOLD", "Interrupts", "prefetch_imports", "steady_gc"]
