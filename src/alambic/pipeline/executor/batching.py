"""How a node's input becomes units: re-batching, row alignment, routing convergence.

Every function here yields ``(seq, inputs)``: the unit's sequence number and one list of rows
per predecessor. Sequence numbers are what keeps output order equal to input order and what a
resumed run replays by.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

from alambic.pipeline.executor.graph import END, Envelope, Node, branch_root
from alambic.steps.base import StepKind
from alambic.steps.typing import Row

Unit = tuple[int, list[list[Row]]]


def batch_size(node: Node) -> float:
    """Rows per unit for a re-batched node (infinite for a global step)."""
    step = node.step
    if step.kind is StepKind.GLOBAL:
        return math.inf
    return float(getattr(step, "input_batch_size", None) or 50)


async def units(
    node: Node, nodes: dict[str, Node], routes: dict[str, dict[int, list[str]]]
) -> AsyncIterator[Unit]:
    """The units a processing node receives, in sequence order."""
    if node.mode == "routed":
        inbox = node.inboxes[0]
        while (env := await inbox.get()) is not END:
            assert env is not None
            yield env.seq, [env.rows]
        return
    if node.mode == "convergence":
        async for unit in convergence_units(node, nodes, routes):
            yield unit
        return
    size = batch_size(node)
    is_global = node.step.kind is StepKind.GLOBAL
    if len(node.inboxes) == 1:
        inbox = node.inboxes[0]
        buffer: list[Row] = []
        seq = 0
        while (env := await inbox.get()) is not END:
            assert env is not None
            buffer.extend(env.rows)
            while len(buffer) >= size:
                take = int(size)
                chunk, buffer = buffer[:take], buffer[take:]
                yield seq, [chunk]
                seq += 1
        if buffer or (is_global and seq == 0):
            yield seq, [buffer]
        return
    async for unit in aligned_units(node, size):
        yield unit


async def merged_inbox(node: Node) -> AsyncIterator[tuple[int, Envelope | None]]:
    """Envelopes of every predecessor as they come, tagged with the predecessor's index."""
    merged: asyncio.Queue[tuple[int, Envelope | None]] = asyncio.Queue()

    async def pump(index: int, inbox: asyncio.Queue[Envelope | None]) -> None:
        while True:
            env = await inbox.get()
            await merged.put((index, env))
            if env is END:
                return

    pumps = [asyncio.create_task(pump(i, q)) for i, q in enumerate(node.inboxes)]
    open_inputs = len(pumps)
    try:
        while open_inputs:
            index, env = await merged.get()
            if env is END:
                open_inputs -= 1
            yield index, env
    finally:
        for p in pumps:
            p.cancel()


async def aligned_units(node: Node, size: float) -> AsyncIterator[Unit]:
    """Row-aligned units from several predecessors: row i of each list belongs together."""
    count = len(node.inboxes)
    buffers: list[list[Row]] = [[] for _ in range(count)]
    ended = [False] * count
    seq = 0
    async for index, env in merged_inbox(node):
        if env is None:
            ended[index] = True
        else:
            buffers[index].extend(env.rows)
        while any(buffers) and all(
            len(b) >= size or e for b, e in zip(buffers, ended, strict=True)
        ):
            if size == math.inf and not all(ended):
                break
            take = int(size) if size != math.inf else max(len(b) for b in buffers)
            chunk = [b[:take] for b in buffers]
            buffers = [b[take:] for b in buffers]
            yield seq, chunk
            seq += 1
    if node.step.kind is StepKind.GLOBAL and seq == 0:
        yield seq, [[] for _ in range(count)]


async def convergence_units(
    node: Node, nodes: dict[str, Node], routes: dict[str, dict[int, list[str]]]
) -> AsyncIterator[Unit]:
    """Where a router's branches meet: per unit, the outputs of the branches that had it."""
    assert node.router is not None
    chosen_by_seq = routes[node.router]
    branch_of = {p: branch_root(nodes, p, node.router) for p in node.preds}
    pending: dict[int, dict[int, list[Row]]] = {}
    next_seq = 0

    def expected(seq: int) -> list[int]:
        chosen = chosen_by_seq.get(seq, [])
        return [i for i, p in enumerate(node.preds) if branch_of[p] in chosen]

    async for index, env in merged_inbox(node):
        if env is not None:
            pending.setdefault(env.seq, {})[index] = env.rows
        while next_seq in chosen_by_seq:
            want = expected(next_seq)
            got = pending.get(next_seq, {})
            if not all(i in got for i in want):
                break
            pending.pop(next_seq, None)
            if want:
                yield next_seq, [got[i] for i in want]
            next_seq += 1
    for seq in sorted(pending):
        got = pending[seq]
        yield seq, [got[i] for i in sorted(got)]


__all__ = ["Unit", "aligned_units", "batch_size", "convergence_units", "merged_inbox", "units"]
