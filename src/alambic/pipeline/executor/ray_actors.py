"""What runs inside the Ray actors of a Ray run: one loaded copy of a step per actor.

The driver sends each actor whole units (batches of rows) as object references and gets
their output rows back; it never sends single rows, which would cost one actor call each. A
step that processes rows asynchronously (a task on an API client) runs every row of every
unit it holds as its own request on the actor's event loop, so many units share the LLM's
concurrency there; any other step processes one unit at a time.

Each actor opens the run's request cache at the driver's path (one machine, or nodes that
share the cache directory), so a unit re-sent after its actor died is answered from the
cache for every request the dead actor had stored. An actor that writes to the request
cache keeps its own disk reserve (named by the driver, beside the run store): a full disk
met in the actor is paid from it, so the answers the actor already received are written
before the run stops, as in the driver. Rate budgets, and a run's spending cap,
are shared through the budget actor (:class:`LedgerHost`, see
:mod:`alambic.llms.shared_budget`). The driver asks each actor for its progress while units
are in flight (:meth:`StepWorker.progress`), so the display moves before a long unit returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alambic.budget import Budget, current_step
from alambic.pipeline.store.reserve import RESERVE_FILENAME, DiskReserve
from alambic.steps.base import shared_budget_ledger
from alambic.steps.typing import Row


@dataclass(frozen=True)
class Recipe:
    """How to build a fresh copy of a pydantic component in another process: its class and
    field values. A live component cannot be pickled as it is (its private state holds
    locks, clients, loaded models); a copy built from its fields is the component as
    configured, which is what an actor must load."""

    cls: type[BaseModel]
    fields: dict[str, Any]
    fields_set: frozenset[str]


def to_recipe(value: Any) -> Any:
    """``value`` with every pydantic model in it replaced by its :class:`Recipe`."""
    if isinstance(value, BaseModel):
        fields = {k: to_recipe(v) for k, v in value.__dict__.items() if k != "pipeline"}
        return Recipe(type(value), fields, frozenset(value.model_fields_set))
    if isinstance(value, list):
        return [to_recipe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_recipe(v) for v in value)
    if isinstance(value, dict):
        return {k: to_recipe(v) for k, v in value.items()}
    return value


def from_recipe(value: Any) -> Any:
    """The component a :func:`to_recipe` result describes, with fresh private state."""
    if isinstance(value, Recipe):
        fields = {k: from_recipe(v) for k, v in value.fields.items()}
        return value.cls.model_construct(_fields_set=set(value.fields_set), **fields)
    if isinstance(value, list):
        return [from_recipe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_recipe(v) for v in value)
    if isinstance(value, dict):
        return {k: from_recipe(v) for k, v in value.items()}
    return value


RowResult = tuple[bool, Any]
"""Per row: ``(True, output rows)`` or ``(False, the exception it raised)``."""


class StepWorker:
    """The body of a step's actor (made a Ray actor class by :func:`actor_classes`)."""

    def __init__(
        self,
        step_blob: bytes,
        cache_path: str | None,
        ledger: Any,
        budget: Budget | None = None,
        reserve: tuple[str, int] | None = None,
    ) -> None:
        from ray import cloudpickle

        self.step = from_recipe(cloudpickle.loads(step_blob))
        self.cache: Any = None
        self.reserve: DiskReserve | None = None
        self.rows_done = 0  # rows this actor finished (units still in flight included)
        self.reports = 0
        self.instance = uuid.uuid4().hex  # tells a restarted actor's reports apart
        self.run_budget: Any = None
        if budget is not None and ledger is not None:
            from alambic.budget import SharedRunBudget

            self.run_budget = SharedRunBudget(budget, ledger)
        else:  # no cap: spending is counted here and reported with the progress
            from alambic.budget import RunBudget

            self.run_budget = RunBudget(None)
        self.step.load()
        if cache_path is not None:
            from alambic.pipeline.store import RequestCacheStore

            if reserve is not None:  # a full disk is paid from it, as in the driver
                path, size = Path(reserve[0]), reserve[1]
                self.reserve = DiskReserve(path.parent, size, filename=path.name)
                self.reserve.ensure()
            self.cache = RequestCacheStore.open(Path(cache_path), reserve=self.reserve)
            self.step.attach_request_cache(self.cache)
        if ledger is not None:
            self.step.attach_shared_budget(ledger)

    def ready(self) -> str:
        """The id of the node this actor runs on (once the step is loaded)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def _enter(self) -> None:
        """This call's context: spending is per step, against the run's shared budget."""
        current_step().set(self.step.name)
        if self.run_budget is not None:
            self.run_budget.activate()

    async def process_batch(self, inputs: list[list[Row]]) -> tuple[list[Row], dict[str, Any]]:
        self._enter()
        # off the actor's event loop: the step may be synchronous code or a local engine
        rows = list(await asyncio.to_thread(self.step.process_batch, *inputs))
        self.rows_done += max((len(i) for i in inputs), default=0)
        return rows, self.progress()

    async def process_rows(self, rows: list[Row]) -> tuple[list[RowResult], dict[str, Any]]:
        self._enter()
        step = self.step

        async def one(row: Row) -> RowResult:
            try:
                return True, await step.aprocess_row(row)
            except Exception as exc:  # the driver turns it into this row's failure
                return False, exc
            finally:
                self.rows_done += 1

        results = list(await asyncio.gather(*(one(row) for row in rows)))
        return results, self.progress()

    def halt(self, reason: str) -> None:
        """Refuse every request not sent yet (the driver's first Ctrl-C): a unit's waiting
        rows end with :class:`~alambic.budget.RunStopping`, and the driver leaves the unit
        for the next run."""
        self.run_budget.halt(reason)

    def progress(self) -> dict[str, Any]:
        """The step's LLM counters, failed generations and rows finished, for the driver's
        display; ``seq`` orders the reports of one actor (a newer one replaces an older)."""
        source = self.step.progress_source()
        counters: dict[str, Any] = {}
        if source is not None:
            counters = dict(source.scheduler.counters.snapshot())
        self.reports += 1
        spend: list[tuple[str, str, dict[str, Any]]] = []
        if not self.run_budget.remote:  # counted here (no cap): what this actor spent so far
            spend = [
                (step, model, dict(vars(account.settled)))
                for (step, model), account in sorted(self.run_budget.accounts.items())
            ]
        return {
            "spend": spend,
            "counters": counters,
            "failures": int(getattr(self.step, "failures", 0)),
            "rows_done": self.rows_done,
            "seq": self.reports,
            "instance": self.instance,
        }

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing clients is best effort at the end
            await self.step.aclose()
        with contextlib.suppress(Exception):
            self.step.attach_request_cache(None)
            self.step.unload()
        try:
            if self.cache is not None:
                self.cache.close()
                self.cache = None
        finally:
            if self.reserve is not None:
                self.reserve.discard()


def actor_reserve(
    book: Any, step: str, replica: int, cache_path: str | None, paths: list[str]
) -> tuple[str, int] | None:
    """The disk reserve (path, size) of one actor that writes to the request cache, its path
    added to ``paths``: its own file beside the run store, named for the step and replica, so
    that the actor Ray restarts and the pipeline's next run find it again (the run store's
    lock keeps two runs of one pipeline apart). ``book`` is the driver's bookkeeping."""
    store, reserve = book.store, book.reserve
    if cache_path is None or store is None or reserve is None or reserve.size <= 0:
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", step)
    paths.append(str(store.run_dir / f"{RESERVE_FILENAME}-{safe}-{replica}"))
    return paths[-1], reserve.size


def discard_reserves(paths: list[str]) -> None:
    """Delete the actors' reserve files once the actors are gone (an actor killed mid-run
    could not delete its own)."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
    paths.clear()


class LedgerHost:
    """The body of the run's budget actor: hosts the one ledger of API rate budgets and,
    with ``spend`` (the cap, the run store's folder, whether to forget earlier runs), the
    run's spending cap and its journal (this actor is then the journal's only writer)."""

    def __init__(self, spend: tuple[Budget, str | None, bool] | None = None) -> None:
        self._ledger = shared_budget_ledger()
        if spend is not None:
            from alambic.budget import RunBudget
            from alambic.pipeline.store.spend import SpendJournal

            limit, folder, fresh = spend
            journal = SpendJournal(Path(folder), fresh=fresh) if folder is not None else None
            self._ledger.run_budget = RunBudget(limit, journal)

    def call(self, method: str, *args: Any) -> Any:
        return self._ledger.call(method, *args)


def actor_classes() -> tuple[Any, Any]:
    """The Ray actor classes (``ray`` is imported only when a Ray run starts)."""
    import ray

    return ray.remote(StepWorker), ray.remote(LedgerHost)


__all__ = [
    "LedgerHost",
    "Recipe",
    "RowResult",
    "StepWorker",
    "actor_classes",
    "actor_reserve",
    "discard_reserves",
    "from_recipe",
    "to_recipe",
]
