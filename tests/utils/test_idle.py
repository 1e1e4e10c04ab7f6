"""Announced idle time (``alambic.utils.idle``): heard by the listeners of the same loop only."""

from __future__ import annotations

import asyncio

from alambic.utils.idle import idle_ahead, on_idle_ahead


def test_listeners_of_the_running_loop_hear_it_until_they_stop() -> None:
    async def main() -> tuple[list[float], list[float]]:
        heard: list[float] = []
        failing_heard: list[float] = []

        def failing(seconds: float) -> None:
            failing_heard.append(seconds)
            raise ValueError("a listener's own bug")

        stop_failing = on_idle_ahead(asyncio.get_running_loop(), failing)
        stop = on_idle_ahead(asyncio.get_running_loop(), heard.append)
        idle_ahead(0.5)  # the failing listener does not stop the others, nor the caller
        stop()
        stop()  # twice is harmless
        idle_ahead(0.25)
        stop_failing()
        idle_ahead(0.125)
        return heard, failing_heard

    assert asyncio.run(main()) == ([0.5], [0.5, 0.25])


def test_another_loop_and_no_loop_hear_nothing() -> None:
    heard: list[float] = []

    async def listen() -> None:
        on_idle_ahead(asyncio.get_running_loop(), heard.append)

    async def announce() -> None:
        idle_ahead(1.0)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(listen())
        asyncio.run(announce())  # a different loop
        idle_ahead(1.0)  # no loop running: nothing to tell
        loop.run_until_complete(announce())
    finally:
        loop.close()
    assert heard == [1.0]
