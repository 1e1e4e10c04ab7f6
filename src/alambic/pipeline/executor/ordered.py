"""Units computed concurrently, emitted and committed strictly in sequence order.

The shared core of every processing node: a producer reads units (replaying committed ones
from the store), starts their computation, and a consumer emits them in order. Two caps keep
memory bounded: units in flight (batch processors) and rows admitted but not yet emitted (row
processors: the buffer between the LLM and the in-order commit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from alambic.pipeline.executor.batching import batch_size, units
from alambic.pipeline.executor.graph import Node
from alambic.steps.typing import Row

if TYPE_CHECKING:
    from alambic.pipeline.executor.workers import Workers


class Abandoned(Exception):
    """A row not sent because the run is stopping; its unit is left for the next run."""


async def run_ordered(
    worker: Workers,
    node: Node,
    concurrency: int | None,
    compute: Callable[[list[list[Row]]], Awaitable[list[Row]]],
    *,
    row_window: int | None = None,
) -> None:
    """Compute units concurrently, emit and commit them in sequence order.

    ``concurrency`` caps units in flight; ``row_window`` caps rows admitted and not yet
    emitted (row processors, which also stop computing at the first Ctrl-C). A unit read
    back from the store is emitted as it was. A failure of the producer reaches the
    consumer through the order queue, so neither waits on the other once one has died.
    """
    store = worker.book.store
    units_left = asyncio.Semaphore(concurrency) if concurrency else None
    rows_left = row_window or 0
    room = asyncio.Condition()
    order: asyncio.Queue[
        tuple[int, Awaitable[list[Row]] | list[Row] | BaseException, int] | None
    ] = asyncio.Queue()
    full = batch_size(node)
    short: set[int] = set()  # re-batched units cut short because the input ended
    draining = False  # the consumer stopped emitting: the producer only drains its inputs
    peak = 0

    def stop_computing() -> bool:
        return row_window is not None and (draining or worker.interrupts.stopped)

    async def admit(count: int) -> None:
        nonlocal rows_left, peak
        if row_window is None:
            return
        count = min(count, row_window)
        async with room:
            await room.wait_for(lambda: rows_left >= count or draining)
            rows_left -= count
            peak = max(peak, row_window - rows_left)

    async def release(count: int) -> None:
        nonlocal rows_left
        if row_window is None:
            return
        async with room:
            rows_left += min(count, row_window)
            room.notify_all()

    async def produce() -> None:
        try:
            async for seq, inputs in units(node, worker.nodes, worker.routes):
                size = max((len(i) for i in inputs), default=0)
                if node.mode == "rebatch" and size < full:
                    short.add(seq)
                if node.progress is not None:
                    node.progress.rows_in += sum(len(i) for i in inputs)
                if store is not None and seq < node.committed:
                    rows = await asyncio.to_thread(store.load_unit, node.signature, seq)
                    await order.put((seq, rows, 0))
                    continue
                if stop_computing():
                    continue  # keep reading so the steps before never block on a put
                if units_left is not None:
                    await units_left.acquire()
                await admit(size)
                if stop_computing():
                    continue
                task = asyncio.ensure_future(compute(inputs))
                await order.put((seq, task, size))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await order.put((-1, exc, 0))  # the consumer re-raises it
            raise
        await order.put(None)

    async def emit_all() -> None:
        nonlocal draining
        held: tuple[int, list[Row], bool] | None = None
        while (item := await order.get()) is not None:
            seq, result, admitted = item
            if isinstance(result, BaseException):
                raise result
            replayed = isinstance(result, list)
            if isinstance(result, list):
                rows = result
            else:
                try:
                    rows = await result
                except Abandoned:
                    break  # stopping: this unit and later ones are left for the next run
            if held is not None and not held[2]:
                worker.book.commit(node, held[0], held[1], last=False)
            held = (seq, rows, replayed)
            await worker.emit(node, seq, rows, commit=False)
            if not replayed:
                if units_left is not None:
                    units_left.release()
                await release(admitted)
        else:
            if not worker.interrupts.stopped:
                seq, rows = (0, []) if held is None else (held[0], held[1])
                worker.book.commit(node, seq, rows, last=True)
            elif held is not None and not held[2] and held[0] not in short:
                # after a stop, a short trailing batch is not the unit a resumed run
                # rebuilds (it re-batches the same rows into a full one): committing it
                # would lose rows
                worker.book.commit(node, held[0], held[1], last=False)
            return
        if held is not None and not held[2]:
            worker.book.commit(node, held[0], held[1], last=False)
        async with room:
            draining = True
            room.notify_all()
        if units_left is not None:
            # the abandoned units never give their places back: without this, a producer
            # waiting for one would never read its inputs to the end, and the run would hang
            for _ in range(concurrency or 0):
                units_left.release()
        # let the units still computing settle (requests in flight finish), read the rest
        while (item := await order.get()) is not None:
            if isinstance(item[1], BaseException):
                raise item[1]
            if not isinstance(item[1], list):
                with contextlib.suppress(Abandoned):
                    await item[1]

    producer = asyncio.create_task(produce())
    try:
        await emit_all()
        await producer
    finally:
        if not producer.done():
            producer.cancel()
        elif not producer.cancelled():
            producer.exception()  # already re-raised by the consumer: mark it retrieved
        while not order.empty():  # units still queued when the consumer raised: their
            item = order.get_nowait()  # error is the one already raised (or moot)
            if item is not None and isinstance(item[1], asyncio.Future):
                item[1].add_done_callback(_retrieved)
        worker.max_buffered_rows[node.name] = peak
    await worker.close_outputs(node)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a unit's outcome as seen, so asyncio does not print it as never retrieved."""
    if not future.cancelled():
        future.exception()


__all__ = ["Abandoned", "run_ordered"]
