"""Routing a step's batches to a subset of its successors.

``a >> sample_n_steps(2) >> [b, c, d]`` sends each batch of ``a`` to two of the three steps, for
instance to spread instructions over several LLMs. A step after the branches that receives from
all of them gets, for each batch of ``a``, the outputs of exactly the branches that handled it,
row-aligned. The built-in sampler is seeded by the batch's position, so a resumed run routes
every batch as the interrupted one did.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alambic.steps.base import _Step

RouteFn = Callable[..., list[str]]


class RoutingBatchFunction:
    """Chooses which successors get a batch: ``fn(successor_names[, batch_seq]) -> names``."""

    def __init__(
        self,
        fn: RouteFn,
        *,
        description: str | None = None,
        origin: tuple[str, dict[str, Any] | None] | None = None,
    ) -> None:
        self._fn = fn
        self._takes_seq = len(inspect.signature(fn).parameters) >= 2
        self.description = description or getattr(fn, "__name__", "routing")
        self.origin = origin
        """How a saved pipeline rebuilds it: ``(import path of the routing function, None)`` or
        ``(import path of a factory such as sample_n_steps, its keyword arguments)``."""
        self._step: _Step | None = None

    def copy(self) -> RoutingBatchFunction:
        """The same routing, not bound to any step (for another pipeline)."""
        return RoutingBatchFunction(self._fn, description=self.description, origin=self.origin)

    def route(self, successors: list[str], batch_seq: int) -> list[str]:
        chosen = self._fn(successors, batch_seq) if self._takes_seq else self._fn(successors)
        unknown = [s for s in chosen if s not in successors]
        if unknown:
            raise ValueError(
                f"Routing function {self.description!r} chose {unknown}, which are not "
                f"successors ({successors})."
            )
        return [s for s in successors if s in chosen]

    def bind(self, step: _Step) -> RoutingBatchFunction:
        self._step = step
        return self

    def __rshift__(self, other: Any) -> Any:
        if self._step is None:
            raise TypeError(
                "Use a routing function between steps: `a >> sample_n_steps(2) >> [b, c]`."
            )
        targets = other if isinstance(other, list) else [other]
        self._step.connect(*targets, routing_batch_function=self)
        return other

    def dump(self) -> dict[str, Any]:
        return {"routing": self.description}


def routing_batch_function(fn: RouteFn) -> RoutingBatchFunction:
    """Decorator: turn ``fn(successor_names) -> chosen_names`` into a routing function.

    A pipeline using it can be saved and loaded when ``fn`` is defined at module level."""
    origin = None
    if "<" not in fn.__qualname__:
        origin = (f"{fn.__module__}.{fn.__qualname__}", None)
    return RoutingBatchFunction(fn, origin=origin)


def sample_n_steps(n: int, *, seed: int = 0) -> RoutingBatchFunction:
    """Send each batch to ``n`` successors drawn at random (reproducibly, per batch)."""
    if n < 1:
        raise ValueError(f"sample_n_steps needs n >= 1, got {n}")

    def sample(successors: list[str], batch_seq: int) -> list[str]:
        if n > len(successors):
            raise ValueError(
                f"sample_n_steps({n}) cannot choose {n} of {len(successors)} successors "
                f"{successors}: connect more steps or lower n."
            )
        return random.Random(f"{seed}:{batch_seq}").sample(successors, n)

    return RoutingBatchFunction(
        sample,
        description=f"sample_n_steps({n})",
        origin=("alambic.steps.routing.sample_n_steps", {"n": n, "seed": seed}),
    )


__all__ = ["RoutingBatchFunction", "routing_batch_function", "sample_n_steps"]
