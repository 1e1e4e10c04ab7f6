"""Bridging synchronous callers and async code without owning an event loop.

alambic never keeps an event loop of its own: the pipeline executor owns the only long-lived
one. A synchronous call such as ``llm.generate(...)`` runs its coroutine on a short-lived loop,
in the calling thread when no loop runs there, or in a helper thread when the caller is itself
inside a running loop (a notebook cell), so ``nest_asyncio`` is never needed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)

    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread below
            error.append(exc)

    thread = threading.Thread(target=target, name="alambic-run-sync", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
