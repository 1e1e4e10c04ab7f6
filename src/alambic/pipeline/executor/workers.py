"""The local executor's workers: one coroutine per node, connected by bounded queues.

- Generators produce units of ``batch_size`` rows, committing each.
- Batch processors keep up to ``concurrency_hint`` units in flight (copies of the step, or
  one engine call at a time for a local model) and emit strictly in sequence order.
- Row processors (``processes_rows_async``: tasks on an API client) send every row as its own
  request on the loop, so a slow or retried request holds only its own slot; finished rows
  are regrouped into their units and emitted in order. Rows admitted but not yet emitted are
  capped at :func:`row_window` (the buffer between the LLM and the in-order commit).

A failure anywhere in a node (a store that cannot be read, a writer that cannot write) ends
the node's coroutine with that error, which ends the run: no await waits on a dead task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from alambic.budget import BudgetExhausted, current_step
from alambic.errors import (
    METADATA_COLUMN,
    ErrorKind,
    LLMConfigurationError,
    StoreError,
    error_entry,
    row_errors,
    set_row_error,
)
from alambic.pipeline.executor.batching import batch_size
from alambic.pipeline.executor.column_types import ColumnTypes
from alambic.pipeline.executor.graph import END, Envelope, Node
from alambic.pipeline.executor.ordered import Abandoned, run_ordered
from alambic.steps.base import Step, merge_rows
from alambic.steps.typing import Row

if TYPE_CHECKING:
    from alambic.pipeline.base import Pipeline
    from alambic.pipeline.executor.bookkeeping import RunBookkeeping
    from alambic.pipeline.executor.lifecycle import Interrupts
    from alambic.pipeline.executor.warm_up import WarmUp

logger = logging.getLogger("alambic")

STOPS_THE_RUN = (LLMConfigurationError, StoreError)
"""Errors no row can get past (a wrong key or URL, a store that cannot be written): they stop
the run instead of failing the rows of a batch."""

ROW_WINDOW_FACTOR = 4
ROW_WINDOW_FLOOR = 1024
"""Rows admitted but not yet emitted by a row processor: ``max(4 x concurrency, 1,024)``,
plus one batch. A batch waits on its slowest row (a retry sleeps up to seconds), so the
window must hold what the LLM answers meanwhile: against a fast server that is far more
than the concurrency (W5: 64 in flight, 1,500 rows/s, retries of 0.25-1 s; a window of
4 x 64 + 100 rows ran at half the old speed, 1,124 rows above it)."""


def row_window(concurrency: int, batch: int) -> int:
    return max(ROW_WINDOW_FACTOR * concurrency, ROW_WINDOW_FLOOR) + batch


class Workers:
    """The node coroutines of a local run (mixed into the run object)."""

    pipeline: Pipeline
    nodes: dict[str, Node]
    routes: dict[str, dict[int, list[str]]]
    book: RunBookkeeping
    interrupts: Interrupts
    warm_up: WarmUp
    dry_run_rows: int | None
    failures: dict[str, int]
    max_buffered_rows: dict[str, int]

    async def run_node(self, node: Node) -> None:
        current_step().set(node.name)  # spending is accounted per step
        try:
            if node.mode == "generator":
                await self.run_generator(node)
            elif node.step.processes_rows_async:
                await self.run_row_processor(node)
            else:
                await self.run_batch_processor(node)
        finally:
            if node.progress is not None:
                node.progress.finished = True

    # -- output ----------------------------------------------------------------------------

    async def emit(
        self,
        node: Node,
        seq: int,
        rows: list[Row],
        *,
        commit: bool,
        last: bool = False,
        source_rows: int | None = None,
    ) -> None:
        types = node.column_types or ColumnTypes(node.name)
        node.column_types = types
        types.check(rows)  # a value of another type than its column's: the row is refused
        if commit:
            self.book.commit(node, seq, rows, last=last, source_rows=source_rows)
        if node.progress is not None:
            node.progress.rows_out += len(rows)
        writer = self.book.writers.get(node.name)
        if writer is not None and rows:
            self.book.failed_rows += sum(1 for row in rows if row_errors(row))
            if self.warm_up.busy():
                # pyarrow is still being imported: wait for it off the loop, which keeps
                # sending requests meanwhile (a node's writes stay in order: it awaits each)
                await asyncio.to_thread(writer.write, rows)
            else:
                writer.write(rows)
        if not node.succs:
            return
        targets = node.succs
        routing = self.pipeline.dag.routing.get(node.name)
        if routing is not None:
            targets = routing.route(node.succs, seq)
            self.routes[node.name][seq] = targets
        copy = len(targets) > 1
        for succ in targets:
            batch = [dict(r) for r in rows] if copy else rows
            await node.outboxes[succ].put(Envelope(seq, batch))

    async def close_outputs(self, node: Node) -> None:
        for queue in node.outboxes.values():
            await queue.put(END)

    # -- generators ------------------------------------------------------------------------

    async def run_generator(self, node: Node) -> None:
        step = node.step
        size = int(getattr(step, "batch_size", None) or 50)
        seq = 0
        produced = 0
        limit = self.dry_run_rows
        store = self.book.store
        offset = 0
        if store is not None and node.committed:
            for seq in range(node.committed):
                rows = await asyncio.to_thread(store.load_unit, node.signature, seq)
                produced += len(rows)
                await self.emit(node, seq, rows, commit=False)
            seq = node.committed
            if store.step_finished(node.signature):
                await self.close_outputs(node)
                return
            offset = store.generator_offset(node.signature)
        iterator = step.process_applying_mappings(offset)  # type: ignore[attr-defined]
        inline = step.runs_inline
        source_rows = offset
        buffer: list[Row] = []
        sentinel: Any = object()
        done = False
        try:
            while not done:
                if self.interrupts.stopped:
                    break
                item = (
                    next(iterator, sentinel)
                    if inline
                    else await asyncio.to_thread(next, iterator, sentinel)
                )
                if item is sentinel:
                    done = True
                else:
                    rows, last = item
                    source_rows += len(rows)
                    buffer.extend(rows)
                    if limit is not None and produced + len(buffer) >= limit:
                        del buffer[max(limit - produced, 0) :]
                        done = True
                    done = done or bool(last)
                # keep the final chunk back so it can be committed as the step's last unit
                while len(buffer) > size or (len(buffer) == size and not done):
                    chunk, buffer = buffer[:size], buffer[size:]
                    produced += len(chunk)
                    await self.emit(
                        node, seq, chunk, commit=True, source_rows=source_rows - len(buffer)
                    )
                    seq += 1
                if done:
                    produced += len(buffer)
                    await self.emit(
                        node, seq, buffer, commit=True, last=True, source_rows=source_rows
                    )
                    seq += 1
        finally:
            with contextlib.suppress(Exception):  # closing a half-read source is best effort
                iterator.close()
        await self.close_outputs(node)

    # -- processors ------------------------------------------------------------------------

    async def run_batch_processor(self, node: Node) -> None:
        step = node.step
        replicas: asyncio.Queue[Any] = asyncio.Queue()
        for replica in node.replicas or [step]:
            replicas.put_nowait(replica)
        # one unit more than copies: the next batch waits for a free copy while the last one
        # is emitted and committed, so an engine never idles on the bookkeeping (each copy
        # still runs one call at a time)
        concurrency = max(1, len(node.replicas) or 1) + 1

        async def compute(inputs: list[list[Row]]) -> list[Row]:
            replica = await replicas.get()
            try:
                if replica.runs_inline:
                    return list(replica.process_batch(*inputs))
                return list(await asyncio.to_thread(replica.process_batch, *inputs))
            except STOPS_THE_RUN:
                raise
            except Exception as exc:  # the batch's rows fail with the reason; the run goes on
                return self.failed_rows(node, inputs, exc)
            finally:
                replicas.put_nowait(replica)

        await run_ordered(self, node, concurrency, compute)

    async def run_row_processor(self, node: Node) -> None:
        step = node.step
        assert isinstance(step, Step)
        concurrency = step.concurrency_hint
        interrupts = self.interrupts

        # Every admitted row starts at once (the window bounds them): their cache lookups
        # share a query, and they wait for the LLM's own slots, which a row sleeping before a
        # retry does not hold. Once the run stops, the run's budget refuses their requests.
        async def one(row: Row) -> list[Row]:
            if interrupts.stopped:
                raise Abandoned
            try:
                return await step.aprocess_row(row)
            except BudgetExhausted as exc:  # budget spent or run stopping: left for the next
                interrupts.stop(str(exc))
                raise Abandoned from exc
            except STOPS_THE_RUN:
                raise
            except Exception as exc:  # this row fails with the reason; the run goes on
                return self.failed_rows(node, [[row]], exc)

        async def compute(inputs: list[list[Row]]) -> list[Row]:
            rows = merge_rows(inputs)
            # every row of the unit settles before the unit does, so a stop still lets the
            # requests in flight finish (their answers reach the request cache)
            results = await asyncio.gather(*(one(row) for row in rows), return_exceptions=True)
            out: list[Row] = []
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                out.extend(result)
            return out

        window = row_window(concurrency, int(min(batch_size(node), 10_000)))
        await run_ordered(self, node, None, compute, row_window=window)

    # -- failed rows -----------------------------------------------------------------------

    def failed_rows(self, node: Node, inputs: list[list[Row]], exc: Exception) -> list[Row]:
        """The rows of ``inputs`` with the step's outputs set to None and the reason."""
        step = node.step
        count = self.failures.get(node.name, 0)
        self.failures[node.name] = count + 1
        rows = merge_rows(inputs)
        if node.progress is not None:
            node.progress.failures += len(rows)
        if count == 0:
            logger.warning(
                "Step %r raised %s: %s. Its rows continue with None outputs and the reason in "
                "%s['error_%s'].",
                node.name,
                type(exc).__name__,
                exc,
                METADATA_COLUMN,
                node.name,
            )
        outputs = list(step.mapped_outputs())
        error = error_entry(ErrorKind.STEP, exc, type=exc)
        failed = []
        for row in rows:
            new = dict(row)
            for column in outputs:
                new.setdefault(column, None) if column in row else new.__setitem__(column, None)
            failed.append(set_row_error(new, node.name, error))
        return failed


__all__ = ["ROW_WINDOW_FACTOR", "ROW_WINDOW_FLOOR", "Workers", "row_window"]
