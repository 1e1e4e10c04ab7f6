"""Moments an event loop is about to idle, told by the code that knows to the code that can
use them.

The request scheduler knows when the loop will wait: its first request goes out alone and
the others wait for its answer or its grace (``SchedulerLimits.probe_grace_s``, 0.1 s by
default). The executor has work that wants such a moment when it is long enough: importing
what writing the dataset needs (pyarrow and pandas, ~0.3-0.45 s of CPU), which in a thread
on a busy loop slows every request the loop handles meanwhile (the two share the GIL).
Neither imports the other: the scheduler calls :func:`idle_ahead`, the executor listens with
:func:`on_idle_ahead`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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


__all__ = ["idle_ahead", "on_idle_ahead"]
