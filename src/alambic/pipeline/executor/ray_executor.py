"""The Ray executor: the same pipeline on a Ray cluster, with the same results.

``pipeline.run(executor="ray")`` (or ``RayExecutor(address=...)``) keeps everything that
decides *what* a run computes on the driver, exactly as the local executor does: the graph,
re-batching, routing, the in-order emission of units, the run store (the driver is its only
writer), the leaf files and the Distiset. Only *computing* a unit moves: each replica of a
processing step is a Ray actor holding a loaded copy of the step, placed with the step's
:class:`~alambic.steps.base.StepResources`; units travel as object references. Generators
and inline steps stay on the driver. The store, signatures and request cache are the local
executor's: a run started locally can be finished on Ray and the reverse.

An actor that dies (its node lost, out of memory, killed) is restarted by Ray and the units
it held are sent again; the requests it had answered come back from the request cache, so
only requests in flight at the death are repeated. An exception raised by the step's own
code becomes failed rows, as locally. API clients share one rate budget per provider key
(:mod:`alambic.llms.shared_budget`) and a run's cap in one ledger actor; without a cap each
actor counts its spending and reports it with the progress the driver polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from alambic.budget import Budget, BudgetExhausted, RunBudget
from alambic.errors import AlambicUserError
from alambic.pipeline.executor import ray_actors
from alambic.pipeline.executor.batching import batch_size
from alambic.pipeline.executor.graph import Node
from alambic.pipeline.executor.local import LocalExecutor, LocalRun
from alambic.pipeline.executor.ordered import Abandoned, run_ordered
from alambic.pipeline.executor.ray_cluster import (
    LedgerBudget,
    RemoteCountingBudget,
    RemoteProgress,
    actor_options,
    connect,
    halt_actors,
    placement_bundles,
    poll_progress,
    release,
    scheduling_strategy,
    units_per_actor,
)
from alambic.pipeline.executor.workers import STOPS_THE_RUN, row_window
from alambic.steps.base import merge_rows
from alambic.steps.typing import Row

if TYPE_CHECKING:
    from alambic.distiset import Distiset
    from alambic.pipeline.base import Pipeline

logger = logging.getLogger("alambic")

UNIT_RESENDS = 8
"""How often one unit is sent again after the actor computing it was lost."""


class RayExecutor(LocalExecutor):
    """Runs each processing step's replicas as Ray actors; the driver keeps the run's books.

    ``address``: a cluster to join (``"auto"``, ``"ray://host:10001"``...). Without one, an
    existing connection (a Ray job, or ``ray.init`` called by the user) is used, then the
    ``RAY_ADDRESS`` variable, and otherwise a local Ray instance is started for the run.
    ``init_kwargs`` go to ``ray.init`` when this executor connects.
    """

    name = "ray"

    def __init__(self, *, address: str | None = None, **init_kwargs: Any) -> None:
        self.address = address
        self.init_kwargs = init_kwargs
        self.placement: dict[str, list[str]] = {}
        """Per step, the ids of the nodes its replicas run on (the last run's)."""

    def run(  # type: ignore[override]
        self, pipeline: Pipeline, *, budget: Any = None, **options: Any
    ) -> Distiset:
        started_here = connect(self.address, self.init_kwargs)
        self.placement.clear()
        try:
            return super().run(pipeline, budget=budget, **options)
        finally:
            if started_here:
                import ray

                ray.shutdown()

    def new_run(self, pipeline: Pipeline, **options: Any) -> LocalRun:
        return RayRun(pipeline, placement=self.placement, **options)


class RayRun(LocalRun):
    """One run whose processing steps compute in Ray actors (see the module docstring)."""

    def __init__(
        self, pipeline: Pipeline, *, placement: dict[str, list[str]] | None = None, **options: Any
    ) -> None:
        super().__init__(pipeline, **options)
        self.placement = placement if placement is not None else {}
        self.actors: dict[str, list[Any]] = {}
        self.remote_progress: dict[str, RemoteProgress] = {}
        self.ledger: Any = None
        self.placement_groups: list[Any] = []
        self.actor_reserves: list[str] = []

    def load_steps(self) -> None:
        import ray
        from ray import cloudpickle

        worker_cls, ledger_cls = ray_actors.actor_classes()
        remote = [n for n in self.nodes.values() if self.runs_remotely(n)]
        local = [n for n in self.nodes.values() if not self.runs_remotely(n)]
        for node in local:
            node.replicas = [node.step]
            node.step.load()
            node.step.attach_request_cache(self.book.request_cache)
        if not remote:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # the budgets live on the driver's node: they die only with the run itself, and the
        # spend journal it writes (run(budget=...)) is beside the driver's run store
        here = ray.get_runtime_context().get_node_id()
        limit = Budget.of(self.budget_limit) if self.budget_limit is not None else None
        store = self.book.store
        spend = None
        if limit is not None:
            spend = (limit, str(store.run_dir) if store is not None else None, not self.use_cache)
        self.ledger = ledger_cls.options(
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
        ).remote(spend)
        cache = self.book.request_cache
        cache_path = str(cache.path) if cache is not None else None
        waiting = []
        for node in remote:
            blob = cloudpickle.dumps(ray_actors.to_recipe(node.step))  # type: ignore[no-untyped-call]
            options = actor_options(node)
            bundles = placement_bundles(node)
            handles = []
            # every replica is its own actor, API tasks included: on Ray, replicas of an API
            # task multiply its concurrency over processes and nodes under one shared budget
            for replica in range(node.step.resources.replicas):
                where = scheduling_strategy(bundles, self.placement_groups)
                reserve = ray_actors.actor_reserve(
                    self.book, node.name, replica, cache_path, self.actor_reserves
                )
                handle = worker_cls.options(**options, scheduling_strategy=where).remote(
                    blob, cache_path, self.ledger, limit, reserve
                )
                handles.append(handle)
                waiting.append((node.name, handle.ready.remote()))
            self.actors[node.name] = handles
            self.remote_progress[node.name] = RemoteProgress()
        self.interrupts.on_stop.append(lambda reason: halt_actors(self.actors, reason))
        for name, ready in waiting:
            try:
                self.placement.setdefault(name, []).append(ray.get(ready))
            except ray.exceptions.RayError as exc:
                self.unload_steps()  # the actors that did load, and their disk reserves
                raise AlambicUserError(
                    f"Step {name!r} could not be loaded in its Ray actor: {_cause(exc)}"
                ) from exc
        for name, nodes in self.placement.items():
            logger.info(
                "Ray: step %r runs %d replica(s) on node(s) %s.",
                name,
                len(nodes),
                ", ".join(node[:8] for node in nodes),
            )

    def open_budget(self) -> RunBudget:
        if self.ledger is None:
            return super().open_budget()
        if self.budget_limit is None:  # counted by the actors, summed here
            return RemoteCountingBudget(self.remote_progress, self.nodes)
        return LedgerBudget(Budget.of(self.budget_limit), self.ledger)

    def unload_steps(self) -> None:
        release(self.actors, self.placement_groups, self.ledger)
        self.actors.clear()
        ray_actors.discard_reserves(self.actor_reserves)  # also those of actors killed mid-run
        for node in self.nodes.values():
            for replica in node.replicas:
                with contextlib.suppress(Exception):  # unloading is best effort at the end
                    replica.attach_request_cache(None)
                    replica.unload()

    def runs_remotely(self, node: Node) -> bool:
        return node.mode != "generator" and not node.step.runs_inline

    # -- processing ------------------------------------------------------------------------

    async def run_node(self, node: Node) -> None:
        if node.name not in self.actors:
            await super().run_node(node)
            return
        try:
            await self.run_remote(node)
        finally:
            if node.progress is not None:
                node.progress.finished = True

    async def run_remote(self, node: Node) -> None:
        import ray

        handles = self.actors[node.name]
        progress = self.remote_progress[node.name]
        if node.progress is not None:
            node.progress.llm = progress if node.step.progress_source() is not None else None
            node.progress.tasks = [progress]
        rows_async = node.step.processes_rows_async
        per_actor = units_per_actor(node)
        pool: asyncio.Queue[int] = asyncio.Queue()
        for _ in range(per_actor):  # round robin: the first units go to every replica
            for index in range(len(handles)):
                pool.put_nowait(index)

        async def call(index: int, inputs: list[list[Row]]) -> list[Row]:
            handle = handles[index]
            if rows_async:
                rows = merge_rows(inputs)
                results, report = await handle.process_rows.remote(rows)
                progress.update(index, report)
                out: list[Row] = []
                for row, (ok, value) in zip(rows, results, strict=True):
                    if not ok and isinstance(value, STOPS_THE_RUN):
                        raise value
                    if not ok and isinstance(value, BudgetExhausted):
                        # the run's budget is reached: stop as locally, this unit (its
                        # answered requests are in the request cache) is left for the next run
                        self.interrupts.stop(str(value))
                        raise Abandoned from value
                    out.extend(value if ok else self.failed_rows(node, [[row]], value))
                return out
            output, report = await handle.process_batch.remote(inputs)
            progress.update(index, report)
            return list(output)

        async def compute(inputs: list[list[Row]]) -> list[Row]:
            index = await pool.get()
            try:
                for attempt in range(UNIT_RESENDS + 1):
                    # after an actor's death, the unit goes to the next replica (Ray restarts
                    # the dead one meanwhile); answered requests come from the request cache
                    target = (index + attempt) % len(handles)
                    try:
                        return await call(target, inputs)
                    except ray.exceptions.RayActorError as exc:
                        if attempt == UNIT_RESENDS:
                            raise AlambicUserError(
                                f"Step {node.name!r}: its Ray actors kept dying ({exc}); "
                                f"{UNIT_RESENDS} re-sends of one batch failed. Check the "
                                "cluster's nodes and the actors' logs (memory, GPU)."
                            ) from exc
                        logger.warning(
                            "Step %r: a Ray actor was lost (%s); its batch is sent again.",
                            node.name,
                            type(exc).__name__,
                        )
                        await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
                    except ray.exceptions.RayTaskError as exc:  # the step's own code raised
                        cause = _cause(exc)
                        if isinstance(cause, STOPS_THE_RUN):
                            raise cause from exc
                        error = cause if isinstance(cause, Exception) else RuntimeError(str(exc))
                        return self.failed_rows(node, inputs, error)
                raise AssertionError("unreachable")
            finally:
                pool.put_nowait(index)

        polling = asyncio.ensure_future(poll_progress(node.progress, handles, progress))
        try:
            if rows_async:
                concurrency = node.step.concurrency_hint
                batch = int(min(batch_size(node), 10_000))
                window = row_window(concurrency * len(handles), batch)
                await run_ordered(self, node, len(handles) * per_actor, compute, row_window=window)
            else:
                await run_ordered(self, node, len(handles), compute)
        finally:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
            if node.progress is not None:
                node.progress.computed = progress.rows_done


def _cause(error: BaseException) -> BaseException:
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


__all__ = ["RayExecutor", "RayRun"]
