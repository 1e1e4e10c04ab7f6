"""The local executor: the whole pipeline in one process, on one asyncio event loop.

Each step is a worker connected to its successors by bounded queues, so memory stays flat
however many rows flow through, and batches stream downstream as soon as they exist.

- A batch (a "unit") has a sequence number. Steps emit results strictly in sequence order,
  so the output order is the input order whatever finished first.
- Between two steps rows are re-batched to the successor's ``input_batch_size``; a step with
  several predecessors receives row-aligned lists; a global step receives everything at once.
- After a routing function (``a >> sample_n_steps(2) >> [b, c, d]``) the branches keep the
  router's units, and the step where they meet again gets, per unit, the outputs of exactly the
  branches that handled it.
- A step that processes rows asynchronously (a task on an API client) has each row sent as
  its own request on the loop; anything synchronous (user ``process`` code, local models) runs
  in worker threads, one call at a time per copy of the step.
- With the run store, every unit a step finishes is committed; a resumed run replays committed
  units and only computes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from alambic import settings
from alambic.budget import current_budget
from alambic.pipeline.executor.base import Executor, prepare_run, retry_kinds
from alambic.pipeline.executor.bookkeeping import RunBookkeeping
from alambic.pipeline.executor.graph import Node, build_nodes, connect_queues
from alambic.pipeline.executor.lifecycle import Interrupts, prefetch_imports, steady_gc
from alambic.pipeline.executor.spending import open_budget, report_budget
from alambic.pipeline.executor.warm_up import WarmUp
from alambic.pipeline.executor.workers import Workers
from alambic.pipeline.progress import ProgressReporter
from alambic.utils.aio import run_loop

if TYPE_CHECKING:
    from alambic.budget import RunBudget
    from alambic.distiset import Distiset
    from alambic.pipeline.base import Pipeline

logger = logging.getLogger("alambic")

# Arrow's default allocators keep freed pages; the system one returns them, which keeps a long
# run's memory flat (see alambic.utils.parquet). Effective if pyarrow is not imported yet.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


class LocalExecutor(Executor):
    """Runs a pipeline in this process (the default executor, ``executor="local"``)."""

    name = "local"

    def run(
        self,
        pipeline: Pipeline,
        *,
        parameters: dict[str, dict[str, Any]] | None = None,
        use_cache: bool = True,
        dataset: Any = None,
        show_progress: bool | None = None,
        storage: bool = True,
        dry_run_rows: int | None = None,
        retry_failed: bool | Iterable[str] = True,
        budget: Any = None,
    ) -> Distiset:
        return self.new_run(
            pipeline,
            parameters=parameters,
            use_cache=use_cache,
            dataset=dataset,
            show_progress=show_progress,
            storage=storage,
            dry_run_rows=dry_run_rows,
            retry_failed=retry_failed,
            budget=budget,
        ).run()

    def new_run(self, pipeline: Pipeline, **options: Any) -> LocalRun:
        """The object that carries out one run (an executor subclass supplies its own)."""
        return LocalRun(pipeline, **options)


class LocalRun(Workers):
    """One run of a pipeline by the local executor."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        parameters: dict[str, dict[str, Any]] | None = None,
        use_cache: bool = True,
        dataset: Any = None,
        show_progress: bool | None = None,
        storage: bool = True,
        dry_run_rows: int | None = None,
        retry_failed: bool | Iterable[str] = True,
        budget: Any = None,
    ) -> None:
        self.pipeline = pipeline
        self.budget_limit = budget
        self.retry = retry_kinds(retry_failed)
        self.parameters = parameters
        self.use_cache = use_cache
        self.dataset = dataset
        self.show_progress = show_progress
        self.storage = storage and dry_run_rows is None
        self.dry_run_rows = dry_run_rows
        self.routes: dict[str, dict[int, list[str]]] = {}
        self.nodes: dict[str, Node] = {}
        self.book = RunBookkeeping(pipeline, self.nodes)
        self.interrupts = Interrupts()
        self.warm_up = WarmUp()
        self.failures: dict[str, int] = {}
        self.max_buffered_rows: dict[str, int] = {}

    def run(self) -> Distiset:
        pipeline = self.pipeline
        settings.event_loop()  # a wrong ALAMBIC_EVENT_LOOP fails before any model loads
        prefetch_imports(pipeline.dag.steps.values())
        plan = prepare_run(pipeline, self.parameters, self.dataset)
        self.nodes.update(build_nodes(pipeline.dag, plan.order, plan.signatures, plan.source))
        self.routes.update({name: {} for name in pipeline.dag.routing})
        book = self.book
        book.open(plan.signatures, storage=self.storage, use_cache=self.use_cache, retry=self.retry)
        try:
            if book.store is not None and book.already_finished():
                logger.info(
                    "Pipeline %r already finished: returning its stored result.", pipeline.name
                )
                book.finish_run("finished", replayed=True)  # nothing spent
                return book.distiset()
            if any(node.step.exclusive_engine for node in self.nodes.values()):
                self.warm_up.start_now()
            self.load_steps()
            budget = self.open_budget()
            self.interrupts.on_stop.append(budget.halt)
            token = budget.activate()
            try:
                with steady_gc():
                    run_loop(self.arun(), interrupt=self.interrupts.ctrl_c_from_another_thread)
            finally:
                budget.deactivate(token)
                book.spend = report_budget(pipeline, budget)
                self.unload_steps()
                self.warm_up.join()
            book.finish_run("interrupted" if self.interrupts.count else "finished")
            distiset = book.distiset()
            if budget.accounts:
                distiset.spend = (pipeline.last_summary or {}).get("spend")
            return distiset
        except BaseException:
            with contextlib.suppress(Exception):  # the original error is the one to report
                book.finish_run("failed")
            raise
        finally:
            book.close()

    # -- steps -----------------------------------------------------------------------------

    def load_steps(self) -> None:
        """Load every step (and its copies) in parallel threads; attach the request cache."""
        errors: list[BaseException] = []
        cache = self.book.request_cache

        def load(node: Node) -> None:
            try:
                step = node.step
                copies = step.resources.replicas if step.replicable else 1
                node.replicas = [step] + [step.model_copy(deep=True) for _ in range(copies - 1)]
                for replica in node.replicas:
                    replica.load()
                    replica.attach_request_cache(cache)
            except BaseException as exc:  # re-raised below, in this thread
                errors.append(exc)

        threads = [
            threading.Thread(target=load, args=(n,), name=f"alambic-load-{n.name}")
            for n in self.nodes.values()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def open_budget(self) -> RunBudget:
        """The run's spending cap and counts (a distributed run keeps them where its workers
        can reach them)."""
        return open_budget(self.budget_limit, self.book.store, use_cache=self.use_cache)

    def unload_steps(self) -> None:
        for node in self.nodes.values():
            for replica in node.replicas:
                with contextlib.suppress(Exception):  # unloading is best effort at the end
                    replica.attach_request_cache(None)
                    replica.unload()

    # -- the loop --------------------------------------------------------------------------

    async def arun(self) -> None:
        loop = asyncio.get_running_loop()
        connect_queues(self.nodes)
        self.interrupts.install(loop)
        reporter = ProgressReporter(
            self.pipeline.name, show=self.show_progress, budget=current_budget()
        )
        for node in self.nodes.values():
            node.progress = reporter.add_step(
                node.name, node.step.progress_source(), list(node.replicas or [node.step])
            )
        self.book.prepare_writers()
        reporter.start()
        stop_watching = self.warm_up.watch(loop)
        tasks = [
            asyncio.create_task(self.run_node(node), name=f"alambic-{node.name}")
            for node in self.nodes.values()
        ]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            errors = [task.exception() for task in done]  # every one retrieved, first raised
            for error in errors:
                if error is not None:
                    for other in pending:
                        other.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    raise error
        finally:
            stop_watching()
            reporter.stop()
            summary = reporter.summary()
            for name, peak in self.max_buffered_rows.items():
                if self.nodes[name].step.processes_rows_async and name in summary["steps"]:
                    # rows admitted and not yet emitted in order (in flight + waiting): the
                    # buffer between the LLM and the in-order commit, capped by row_window
                    summary["steps"][name]["max_rows_held"] = peak
            self.pipeline.last_summary = summary
            for node in self.nodes.values():
                with contextlib.suppress(Exception):  # closing clients is best effort
                    await node.step.aclose()
            self.interrupts.remove(loop)
        await asyncio.to_thread(self.book.finish_writers, complete=not self.interrupts.count)


__all__ = ["LocalExecutor", "LocalRun"]
