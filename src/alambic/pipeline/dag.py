"""The pipeline's graph: steps by name, edges, routing, and the checks made before a run."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from alambic.errors import MissingColumnError, PipelineValidationError
from alambic.steps.base import _Step

if TYPE_CHECKING:
    from alambic.steps.routing import RoutingBatchFunction


class DAG:
    """Steps and their connections, kept in insertion order so runs are deterministic."""

    def __init__(self) -> None:
        self.steps: dict[str, _Step] = {}
        self.successors: dict[str, list[str]] = defaultdict(list)
        self.predecessors: dict[str, list[str]] = defaultdict(list)
        self.routing: dict[str, RoutingBatchFunction] = {}

    def add_step(self, step: _Step) -> None:
        name = step.step_name
        existing = self.steps.get(name)
        if existing is not None and existing is not step:
            raise PipelineValidationError(
                f"Two steps are named {name!r} ({type(existing).__name__} and "
                f"{type(step).__name__}): step names must be unique in a pipeline. "
                f"Pass name=... to one of them."
            )
        self.steps[name] = step

    def add_edge(self, src: str, dst: str) -> None:
        if src == dst:
            raise PipelineValidationError(f"Step {src!r} cannot be connected to itself.")
        if dst not in self.successors[src]:
            self.successors[src].append(dst)
            self.predecessors[dst].append(src)

    def roots(self) -> list[str]:
        return [n for n in self.steps if not self.predecessors.get(n)]

    def leaves(self) -> list[str]:
        return [n for n in self.steps if not self.successors.get(n)]

    def topological_order(self) -> list[str]:
        indegree = {n: len(self.predecessors.get(n, [])) for n in self.steps}
        ready = [n for n in self.steps if indegree[n] == 0]
        order: list[str] = []
        while ready:
            node = ready.pop(0)
            order.append(node)
            for succ in self.successors.get(node, []):
                indegree[succ] -= 1
                if indegree[succ] == 0:
                    ready.append(succ)
        if len(order) != len(self.steps):
            cyclic = [n for n in self.steps if n not in order]
            raise PipelineValidationError(
                f"The pipeline has a cycle through steps {cyclic}: a step cannot feed one of "
                "its ancestors. Remove one of the connections between them."
            )
        return order

    def ancestors(self, name: str) -> list[str]:
        seen: list[str] = []
        stack = list(self.predecessors.get(name, []))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.append(node)
                stack.extend(self.predecessors.get(node, []))
        return seen

    def validate(self, *, has_dataset: bool = False) -> list[str]:
        """Check the graph and columns; return the topological order."""
        if not self.steps:
            raise PipelineValidationError("The pipeline has no steps: create steps inside it.")
        order = self.topological_order()
        if len(self.steps) > 1:
            for name in self.steps:
                if not self.predecessors.get(name) and not self.successors.get(name):
                    raise PipelineValidationError(
                        f"Step {name!r} is not connected to any other step. Connect it with "
                        f"`>>` (e.g. `previous >> {name}`) or remove it."
                    )
        for name in self.roots():
            step = self.steps[name]
            if not step.is_generator and not has_dataset:
                raise PipelineValidationError(
                    f"Step {name!r} ({type(step).__name__}) has no predecessor but is not a "
                    "generator step, so nothing feeds it. Start the pipeline with a generator "
                    "(e.g. LoadDataFromDicts(data=[...]) >> step) or pass dataset=... to run()."
                )
        for name in self.steps:
            step = self.steps[name]
            if step.is_generator and self.predecessors.get(name):
                raise PipelineValidationError(
                    f"Step {name!r} is a generator step and cannot receive input from "
                    f"{self.predecessors[name]}."
                )
        for src, routing in self.routing.items():
            if len(self.successors.get(src, [])) < 1:
                raise PipelineValidationError(
                    f"Step {src!r} has a routing function ({routing.description}) but no successors."
                )
        return order

    def validate_columns(self, order: list[str], dataset_columns: list[str] | None) -> None:
        """Every required input column must be produced by an ancestor (after mappings)."""
        available: dict[str, set[str]] = {}
        for name in order:
            step = self.steps[name]
            try:
                inputs = step.own_inputs()
                outputs = step.own_outputs()
            except Exception as exc:
                raise PipelineValidationError(
                    f"Step {name!r} ({type(step).__name__}) cannot tell its columns: {exc}"
                ) from exc
            step.check_mappings(inputs, outputs)
            preds = self.predecessors.get(name, [])
            if preds:
                incoming: set[str] = set()
                for pred in preds:
                    incoming |= available[pred]
            else:
                incoming = set(dataset_columns or [])
            known_inputs = bool(preds) or dataset_columns is not None
            if known_inputs and not _passes_unknown_columns(incoming):
                for column, required in step.mapped_inputs().items():
                    if required and column not in incoming:
                        mapped_from = [k for k, v in step.input_mappings.items() if v == column]
                        where = (
                            f" (input_mappings reads it for {mapped_from[0]!r})"
                            if mapped_from
                            else ""
                        )
                        raise MissingColumnError(
                            f"Step {name!r} ({type(step).__name__}) needs the column "
                            f"{column!r}{where}, but its predecessors {preds or ['dataset']} "
                            f"only produce {sorted(incoming)}. Produce it upstream or map an "
                            f"existing column with input_mappings={{{column!r}: '<column>'}}."
                        )
            produced = set(step.mapped_outputs())
            if step.is_generator and not produced:
                produced = {_ANY}
            available[name] = incoming | produced | ({_ANY} if _passes_unknown(step) else set())


_ANY = "\x00any"


def _passes_unknown_columns(columns: set[str]) -> bool:
    return _ANY in columns


def _passes_unknown(step: _Step) -> bool:
    """Steps whose output columns are only known at run time (e.g. a loader before load())."""
    return step.passes_unknown_columns
