"""The nodes of a run: one per step, with how it is fed (its mode) and its neighbours.

Modes:

- ``generator``: produces rows (``process_applying_mappings(offset)``).
- ``rebatch``: rows from its predecessors re-batched to its ``input_batch_size`` (several
  predecessors: row-aligned lists); a global step gets every row at once.
- ``routed``: downstream of a routing function along a single-predecessor chain; keeps the
  router's batches (units) as they are.
- ``convergence``: where branches of one router meet again; per unit, gets the outputs of
  exactly the branches that handled it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alambic.pipeline.executor.sources import DATASET_SOURCE
from alambic.steps.base import StepKind, _Step
from alambic.steps.typing import Row

if TYPE_CHECKING:
    from alambic.pipeline.dag import DAG
    from alambic.pipeline.executor.column_types import ColumnTypes

END = None
"""Put on a queue after a node's last envelope."""

QUEUE_SIZE = 8
"""Envelopes buffered between two nodes (bounded, so memory stays flat)."""


@dataclass(slots=True)
class Envelope:
    """One unit of rows travelling from a node to a successor; ``seq`` orders units."""

    seq: int
    rows: list[Row]


@dataclass
class Node:
    """One step in a run: its identity, neighbours, mode, and (local executor) queues."""

    name: str
    step: _Step
    signature: str
    preds: list[str]
    succs: list[str]
    mode: str  # generator | rebatch | routed | convergence
    router: str | None = None
    inboxes: list[asyncio.Queue[Envelope | None]] = field(default_factory=list)
    outboxes: dict[str, asyncio.Queue[Envelope | None]] = field(default_factory=dict)
    committed: int = 0
    progress: Any = None
    replicas: list[_Step] = field(default_factory=list)
    column_types: ColumnTypes | None = None  # made on the first emit (see .column_types)


def build_nodes(
    dag: DAG, order: list[str], signatures: dict[str, str], source: _Step | None
) -> dict[str, Node]:
    """The nodes of a run in topological order (the dataset source first, when given)."""
    preds = {n: list(dag.predecessors.get(n, [])) for n in order}
    succs = {n: list(dag.successors.get(n, [])) for n in order}
    steps: dict[str, _Step] = {n: dag.steps[n] for n in order}
    names = list(order)
    if source is not None:
        roots = [n for n in order if not preds[n]]
        for root in roots:
            preds[root] = [DATASET_SOURCE]
        preds[DATASET_SOURCE] = []
        succs[DATASET_SOURCE] = roots
        steps[DATASET_SOURCE] = source
        names = [DATASET_SOURCE, *order]
    routed: dict[str, str] = {}  # node -> router it descends from along a single-pred chain
    nodes: dict[str, Node] = {}
    for name in names:
        step = steps[name]
        ps = preds[name]
        router: str | None = None
        if step.kind is StepKind.GENERATOR:
            mode = "generator"
        elif step.kind is StepKind.GLOBAL:
            mode = "rebatch"  # a global step gets every row at once, after a router too
        elif len(ps) == 1 and (ps[0] in dag.routing or ps[0] in routed):
            mode = "routed"
            router = ps[0] if ps[0] in dag.routing else routed[ps[0]]
            routed[name] = router
        elif len(ps) > 1 and all(p in routed for p in ps) and len({routed[p] for p in ps}) == 1:
            mode = "convergence"
            router = routed[ps[0]]
        else:
            mode = "rebatch"
        nodes[name] = Node(
            name=name,
            step=step,
            signature=signatures[name],
            preds=ps,
            succs=succs[name],
            mode=mode,
            router=router,
        )
    return nodes


def connect_queues(nodes: dict[str, Node]) -> None:
    """Give every edge a bounded queue (the local executor's transport)."""
    for node in nodes.values():
        for succ in node.succs:
            node.outboxes[succ] = asyncio.Queue(maxsize=QUEUE_SIZE)
    for name, node in nodes.items():
        node.inboxes = [nodes[p].outboxes[name] for p in node.preds]


def branch_root(nodes: dict[str, Node], name: str, router: str) -> str:
    """The first step after ``router`` on the single-predecessor chain that leads to ``name``."""
    while True:
        preds = nodes[name].preds
        if preds == [router]:
            return name
        name = preds[0]


__all__ = ["END", "QUEUE_SIZE", "Envelope", "Node", "branch_root", "build_nodes", "connect_queues"]
