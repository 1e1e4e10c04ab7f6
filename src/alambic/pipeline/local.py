"""The local executor: the whole pipeline in one process, on one asyncio event loop.

Each step is a worker connected to its successors by bounded queues, so memory stays flat
however many rows flow through, and batches stream downstream as soon as they exist.

- A batch (a "unit") has a sequence number. Every step processes several units at once where
  that helps (a task keeps enough in flight to fill its LLM's concurrency) and emits results
  strictly in sequence order, so the output order is the input order whatever finished first.
- Between two steps rows are re-batched to the successor's ``input_batch_size``; a step with
  several predecessors receives row-aligned lists; a global step receives everything at once.
- After a routing function (``a >> sample_n_steps(2) >> [b, c, d]``) the branches keep the
  router's units, and the step where they meet again gets, per unit, the outputs of exactly the
  branches that handled it.
- A task whose LLM is an API client runs its requests on the loop; anything synchronous (user
  ``process`` code, local models) runs in worker threads.
- With the run store, every unit a step finishes is committed; a resumed run replays committed
  units and only computes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alambic import settings
from alambic.errors import (
    METADATA_COLUMN,
    AlambicUserError,
    ErrorKind,
    LLMConfigurationError,
    StoreError,
    error_entry,
    set_row_error,
)
from alambic.llms.base import AsyncLLM
from alambic.pipeline.progress import ProgressReporter, StepProgress
from alambic.steps.base import GeneratorStep, Step, _Step, normalize_generator_item
from alambic.steps.tasks.base import Task, _Task
from alambic.steps.typing import Row

if TYPE_CHECKING:
    from alambic.distiset import Distiset
    from alambic.pipeline.base import Pipeline
    from alambic.pipeline.store import RequestCacheStore, RunStore

logger = logging.getLogger("alambic")

# Arrow's default allocators keep freed pages; the system one returns them, which keeps a long
# run's memory flat (see alambic.utils.parquet). Effective if pyarrow is not imported yet.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

_END = None
#: Errors no row can get past: they stop the run instead of failing the batch's rows.
_STOPS_THE_RUN = (LLMConfigurationError, StoreError)
QUEUE_SIZE = 8
DATASET_SOURCE = "dataset"


@dataclass(slots=True)
class Envelope:
    seq: int
    rows: list[Row]


class _DatasetSource(GeneratorStep):
    """Feeds ``run(dataset=...)`` to the root steps of a pipeline that has no generator."""

    data: Any = None
    _runs_inline = True

    @property
    def outputs(self) -> list[str]:
        first = _first_row(self.data)
        return list(first) if first else []

    def process(self, offset: int = 0) -> Iterator[tuple[list[Row], bool]]:
        size = self.batch_size or 50
        total = len(self.data)
        if total == 0:
            yield [], True
            return
        for start in range(offset, total, size):
            chunk = self.data[start : start + size]
            if not isinstance(chunk, list):  # a Hugging Face dataset slice is a dict of columns
                keys = list(chunk)
                chunk = [
                    dict(zip(keys, values, strict=True))
                    for values in zip(*chunk.values(), strict=True)
                ]
            else:
                chunk = [dict(r) for r in chunk]
            yield chunk, start + size >= total


def _first_row(data: Any) -> dict[str, Any] | None:
    if data is None or len(data) == 0:
        return None
    row = data[0]
    return dict(row) if isinstance(row, dict) else None


def _dataset_columns(data: Any) -> list[str]:
    names = getattr(data, "column_names", None)
    if names is not None:
        return list(names)
    first = _first_row(data)
    return list(first) if first else []


def merge_rows(inputs: list[list[Row]]) -> list[Row]:
    """Row i of the result holds the columns of row i of every input (later inputs win)."""
    if len(inputs) == 1:
        return inputs[0]
    length = max((len(rows) for rows in inputs), default=0)
    merged: list[Row] = []
    for i in range(length):
        row: Row = {}
        metadata: dict[str, Any] = {}
        for rows in inputs:
            if i < len(rows):
                row.update(rows[i])
                meta = rows[i].get(METADATA_COLUMN)
                if isinstance(meta, dict):
                    metadata.update(meta)
        if metadata:
            row[METADATA_COLUMN] = metadata
        merged.append(row)
    return merged


@dataclass
class _Node:
    """Runtime state of one step in a run."""

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
    progress: StepProgress | None = None
    replicas: list[_Step] = field(default_factory=list)


class LocalExecutor:
    """Runs a pipeline in this process; see the module docstring for how."""

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
    ) -> None:
        self.pipeline = pipeline
        self.parameters = parameters
        self.use_cache = use_cache
        self.dataset = dataset
        self.show_progress = show_progress
        self.storage = storage and dry_run_rows is None
        self.dry_run_rows = dry_run_rows
        self.routes: dict[str, dict[int, list[str]]] = {}
        self.nodes: dict[str, _Node] = {}
        self.store: RunStore | None = None
        self.request_cache: RequestCacheStore | None = None
        self._stopping = False
        self._interrupts = 0
        self._failures: dict[str, int] = {}
        self._writers: dict[str, Any] = {}
        self._data_dir: Path | None = None
        self._tmp_dir: Path | None = None
        self._forced: dict[str, bool] = {}
        self._warm_up: threading.Thread | None = None

    # -- entry point -----------------------------------------------------------------------

    def run(self) -> Distiset:
        pipeline = self.pipeline
        _prefetch_imports(pipeline)
        pipeline.apply_parameters(self.parameters)
        has_dataset = self.dataset is not None
        if (
            has_dataset
            and isinstance(self.dataset, list)
            and not all(isinstance(r, dict) for r in self.dataset)
        ):
            raise AlambicUserError(
                "run(dataset=...) takes a list of dicts or a Hugging Face dataset."
            )
        order = pipeline.validate(
            dataset_columns=_dataset_columns(self.dataset) if has_dataset else None,
            has_dataset=has_dataset,
        )
        signatures = pipeline.step_signatures(order)
        source: _DatasetSource | None = None
        if has_dataset:
            source = _DatasetSource(name=DATASET_SOURCE, data=self.dataset)
            signatures = {DATASET_SOURCE: _dataset_fingerprint(self.dataset), **signatures}
        self._build_nodes(order, signatures, source)
        self._open_storage(signatures)
        try:
            if self.store is not None and self._already_finished():
                logger.info(
                    "Pipeline %r already finished: returning its stored result.", pipeline.name
                )
                self.store.finish_run("finished")
                return self._distiset()
            self._load_steps()
            try:
                self._run_loop()
            finally:
                self._unload_steps()
                if self._warm_up is not None:
                    self._warm_up.join()
            if self._interrupts and self.store is not None:
                self.store.finish_run("interrupted")
            elif self.store is not None:
                self.store.finish_run("finished")
            return self._distiset()
        except BaseException:
            if self.store is not None:
                with contextlib.suppress(Exception):
                    self.store.finish_run("failed")
            raise
        finally:
            self._close_storage()

    # -- setup -----------------------------------------------------------------------------

    def _build_nodes(
        self, order: list[str], signatures: dict[str, str], source: _DatasetSource | None
    ) -> None:
        dag = self.pipeline.dag
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
        for name in names:
            step = steps[name]
            ps = preds[name]
            router: str | None = None
            if step._is_generator:
                mode = "generator"
            elif step._is_global:
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
            node = _Node(
                name=name,
                step=step,
                signature=signatures[name],
                preds=ps,
                succs=succs[name],
                mode=mode,
                router=router,
            )
            self.nodes[name] = node
        for node in self.nodes.values():
            for succ in node.succs:
                queue: asyncio.Queue[Envelope | None] = asyncio.Queue(maxsize=QUEUE_SIZE)
                node.outboxes[succ] = queue
        for name, node in self.nodes.items():
            node.inboxes = [self.nodes[p].outboxes[name] for p in node.preds]
        for name in dag.routing:
            self.routes[name] = {}

    def _open_storage(self, signatures: dict[str, str]) -> None:
        cache_dir = self.pipeline.cache_dir or settings.cache_dir()
        if not self.storage:
            import tempfile

            self._tmp_dir = Path(tempfile.mkdtemp(prefix="alambic-run-"))
            self._data_dir = self._tmp_dir / "data"
            return
        from alambic.pipeline.store import RequestCacheStore, RunStore, request_cache_path

        pipeline_signature = self.pipeline.signature()
        if DATASET_SOURCE in signatures:
            pipeline_signature = _combine(pipeline_signature, signatures[DATASET_SOURCE])
        self.store = RunStore.open(
            cache_dir=cache_dir,
            pipeline_name=self.pipeline.name,
            pipeline_signature=pipeline_signature,
            pipeline_yaml=self.pipeline.to_yaml(),
            lock_timeout=settings.lock_timeout(),
        )
        self._data_dir = self.store.run_dir / "data"
        if settings.request_cache_enabled():
            shared = settings.share_request_cache()
            path = request_cache_path(cache_dir, None if shared else self.store.run_dir)
            self.request_cache = RequestCacheStore.open(path)
        self.store.begin_run()
        forced = not self.use_cache
        for name in self.nodes:
            node = self.nodes[name]
            step = node.step
            self.store.record_step(node.signature, name, step.dump())
            upstream_forced = any(self._forced.get(p, False) for p in node.preds)
            force_here = forced or not step.use_cache or upstream_forced
            self._forced[name] = force_here
            if force_here:
                self.store.invalidate_step(node.signature)
                node.committed = 0
            else:
                node.committed = self.store.committed_units(node.signature)

    def _already_finished(self) -> bool:
        assert self.store is not None
        assert self._data_dir is not None
        for _name, node in self.nodes.items():
            if not self.store.step_finished(node.signature):
                return False
        leaves = [n for n, node in self.nodes.items() if not node.succs]
        return all((self._data_dir / leaf / "_COMPLETE").exists() for leaf in leaves)

    def _close_storage(self) -> None:
        for writer in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()
        if self.request_cache is not None:
            self.request_cache.close()
        if self.store is not None:
            self.store.close()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def _load_steps(self) -> None:
        steps = [node for node in self.nodes.values()]
        errors: list[BaseException] = []

        def load(node: _Node) -> None:
            try:
                step = node.step
                replicas = (
                    getattr(step.resources, "replicas", 1)
                    if not isinstance(step, _Task) or not isinstance(step.llm, AsyncLLM)
                    else 1
                )
                node.replicas = [step] + [
                    step.model_copy(deep=True) for _ in range(max(replicas, 1) - 1)
                ]
                for replica in node.replicas:
                    replica.load()
                    if isinstance(replica, _Task):
                        replica.llm.set_request_cache(self.request_cache)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=load, args=(n,), name=f"alambic-load-{n.name}") for n in steps
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def _unload_steps(self) -> None:
        for node in self.nodes.values():
            for replica in node.replicas:
                with contextlib.suppress(Exception):
                    if isinstance(replica, _Task):
                        replica.llm.set_request_cache(None)
                    replica.unload()

    # -- the loop --------------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.run(self._arun())

    async def _arun(self) -> None:
        loop = asyncio.get_running_loop()
        self._install_signal_handlers(loop)
        reporter = ProgressReporter(self.pipeline.name, show=self.show_progress)
        for node in self.nodes.values():
            llm = node.step.llm if isinstance(node.step, _Task) else None
            node.progress = reporter.add_step(
                node.name,
                llm if isinstance(llm, AsyncLLM) else None,
                [r for r in node.replicas or [node.step] if isinstance(r, _Task)],
            )
        self._prepare_writers()
        reporter.start()
        stop_watching = self._watch_for_idle_loop(loop)
        tasks = [
            asyncio.create_task(self._run_node(node), name=f"alambic-{node.name}")
            for node in self.nodes.values()
        ]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    for other in pending:
                        other.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    raise task.exception()  # type: ignore[misc]
        finally:
            stop_watching()
            reporter.stop()
            self.pipeline.last_summary = reporter.summary()
            for node in self.nodes.values():
                step = node.step
                if isinstance(step, _Task) and isinstance(step.llm, AsyncLLM):
                    with contextlib.suppress(Exception):
                        await step.llm.aclose()
            self._remove_signal_handlers(loop)
        await asyncio.to_thread(self._finish_writers)

    def _watch_for_idle_loop(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Import what writing the dataset needs (pyarrow, datasets: 2-3 s) in a thread once the
        event loop is mostly idle, e.g. waiting on a rate limit or a slow model.

        Where the loop is busy (a fast server), a second thread would only slow it down: the two
        share the GIL, and the loop then waits up to a switch interval for it after every
        socket operation (measured: -10% rows/s on W1). There the imports happen when first
        needed, on the loop, as one short stall. Idle means the loop thread used under half of
        a 100 ms tick's CPU. Returns the function that stops watching.
        """
        last = [time.monotonic(), time.thread_time()]
        handle: list[asyncio.TimerHandle] = []

        def tick() -> None:
            now, cpu = time.monotonic(), time.thread_time()
            busy = (cpu - last[1]) / max(now - last[0], 1e-6)
            last[:] = [now, cpu]
            if busy >= 0.5:
                handle[:] = [loop.call_later(0.1, tick)]
            elif not _outputs_imported():
                self._warm_up = threading.Thread(
                    target=_warm_up_outputs, name="alambic-warm-up", daemon=True
                )
                self._warm_up.start()

        handle.append(loop.call_later(0.1, tick))
        return lambda: handle[-1].cancel()

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigint() -> None:
            self._interrupts += 1
            if self._interrupts == 1:
                self._stopping = True
                logger.warning(
                    "Stopping: no new rows are read; work in flight finishes and is saved. "
                    "Press Ctrl-C again to exit at once."
                )
            else:
                for task in asyncio.all_tasks(loop):
                    task.cancel()

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, on_sigint)

    def _remove_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    # -- writers for leaf steps ------------------------------------------------------------

    def _prepare_writers(self) -> None:
        from alambic.utils.parquet import ParquetRowWriter

        assert self._data_dir is not None
        for name, node in self.nodes.items():
            if node.succs:
                continue
            directory = self._data_dir / name
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            self._writers[name] = ParquetRowWriter(directory)

    def _finish_writers(self) -> None:
        assert self._data_dir is not None
        for name, writer in self._writers.items():
            writer.close()
            if not self._interrupts:
                (self._data_dir / name / "_COMPLETE").touch()
        self._writers.clear()

    def _distiset(self) -> Distiset:
        from alambic.distiset import Distiset

        assert self._data_dir is not None
        leaves = [n for n, node in self.nodes.items() if not node.succs]
        dirs = {leaf: self._data_dir / leaf for leaf in leaves}
        return Distiset.from_parquet(
            dirs,
            pipeline_yaml=self.pipeline.to_yaml(),
            keep_metadata=self.pipeline.enable_metadata,
        )

    # -- one step --------------------------------------------------------------------------

    async def _run_node(self, node: _Node) -> None:
        if node.mode == "generator":
            await self._run_generator(node)
        else:
            await self._run_processor(node)

    async def _emit(
        self,
        node: _Node,
        seq: int,
        rows: list[Row],
        *,
        commit: bool,
        last: bool = False,
        source_rows: int | None = None,
    ) -> None:
        if commit and self.store is not None:
            self.store.commit_unit(
                node.signature, seq, rows, step_name=node.name, source_rows=source_rows, last=last
            )
        progress = node.progress
        if progress is not None:
            progress.rows_out += len(rows)
        writer = self._writers.get(node.name)
        if writer is not None and rows:
            warm_up = self._warm_up
            if warm_up is not None and warm_up.is_alive():
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

    async def _close_outputs(self, node: _Node) -> None:
        for queue in node.outboxes.values():
            await queue.put(_END)
        if node.progress is not None:
            node.progress.finished = True

    async def _run_generator(self, node: _Node) -> None:
        step = node.step
        assert isinstance(step, GeneratorStep)
        size = step.batch_size or 50
        seq = 0
        produced = 0
        limit = self.dry_run_rows
        store = self.store
        if store is not None and node.committed:
            for seq in range(node.committed):
                rows = store.load_unit(node.signature, seq)
                produced += len(rows)
                await self._emit(node, seq, rows, commit=False)
            seq = node.committed
            if store.step_finished(node.signature):
                await self._close_outputs(node)
                return
            offset = store.generator_offset(node.signature)
        else:
            offset = 0
        iterator = step.process(offset)
        inline = step._runs_inline
        source_rows = offset
        buffer: list[Row] = []
        sentinel = object()
        done = False
        while not done:
            if self._stopping:
                break
            item = (
                next(iterator, sentinel)
                if inline
                else await asyncio.to_thread(next, iterator, sentinel)
            )
            if item is sentinel:
                done = True
            else:
                rows, last = normalize_generator_item(item, step_name=node.name)
                if step.output_mappings:
                    rows = [_rename(r, step.output_mappings) for r in rows]
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
                await self._emit(
                    node, seq, chunk, commit=True, source_rows=source_rows - len(buffer)
                )
                seq += 1
            if done:
                produced += len(buffer)
                await self._emit(node, seq, buffer, commit=True, last=True, source_rows=source_rows)
                seq += 1
        with contextlib.suppress(Exception):
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        await self._close_outputs(node)

    # -- units of work ---------------------------------------------------------------------

    async def _units(self, node: _Node) -> AsyncIterator[tuple[int, list[list[Row]]]]:
        step = node.step
        assert isinstance(step, Step)
        if node.mode == "routed":
            inbox = node.inboxes[0]
            while (env := await inbox.get()) is not _END:
                assert env is not None
                yield env.seq, [env.rows]
            return
        if node.mode == "convergence":
            async for unit in self._convergence_units(node):
                yield unit
            return
        size = step.input_batch_size or 50
        if step._is_global:
            size = math.inf  # type: ignore[assignment]
        if len(node.inboxes) == 1:
            inbox = node.inboxes[0]
            buffer: list[Row] = []
            seq = 0
            while (env := await inbox.get()) is not _END:
                assert env is not None
                buffer.extend(env.rows)
                while len(buffer) >= size:
                    chunk, buffer = buffer[:size], buffer[size:]
                    yield seq, [chunk]
                    seq += 1
            if buffer or (step._is_global and seq == 0):
                yield seq, [buffer]
            return
        async for unit in self._aligned_units(node, size):
            yield unit

    async def _merged_inbox(self, node: _Node) -> AsyncIterator[tuple[int, Envelope | None]]:
        merged: asyncio.Queue[tuple[int, Envelope | None]] = asyncio.Queue()

        async def pump(index: int, inbox: asyncio.Queue[Envelope | None]) -> None:
            while True:
                env = await inbox.get()
                await merged.put((index, env))
                if env is _END:
                    return

        pumps = [asyncio.create_task(pump(i, q)) for i, q in enumerate(node.inboxes)]
        open_inputs = len(pumps)
        try:
            while open_inputs:
                index, env = await merged.get()
                if env is _END:
                    open_inputs -= 1
                yield index, env
        finally:
            for p in pumps:
                p.cancel()

    async def _aligned_units(
        self, node: _Node, size: float
    ) -> AsyncIterator[tuple[int, list[list[Row]]]]:
        count = len(node.inboxes)
        buffers: list[list[Row]] = [[] for _ in range(count)]
        ended = [False] * count
        seq = 0
        async for index, env in self._merged_inbox(node):
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
        if node.step._is_global and seq == 0:
            yield seq, [[] for _ in range(count)]

    async def _convergence_units(self, node: _Node) -> AsyncIterator[tuple[int, list[list[Row]]]]:
        assert node.router is not None
        routes = self.routes[node.router]
        branch_of = {p: self._branch_root(p, node.router) for p in node.preds}
        pending: dict[int, dict[int, list[Row]]] = {}
        next_seq = 0
        all_ended = False

        def expected(seq: int) -> list[int]:
            chosen = routes.get(seq, [])
            return [i for i, p in enumerate(node.preds) if branch_of[p] in chosen]

        async for index, env in self._merged_inbox(node):
            if env is not None:
                pending.setdefault(env.seq, {})[index] = env.rows
            while True:
                if next_seq not in routes:
                    break
                want = expected(next_seq)
                got = pending.get(next_seq, {})
                if all(i in got for i in want):
                    pending.pop(next_seq, None)
                    if want:
                        yield next_seq, [got[i] for i in want]
                    next_seq += 1
                else:
                    break
        del all_ended
        for seq in sorted(pending):
            got = pending[seq]
            yield seq, [got[i] for i in sorted(got)]

    def _branch_root(self, name: str, router: str) -> str:
        while True:
            preds = self.nodes[name].preds
            if preds == [router]:
                return name
            name = preds[0]

    async def _run_processor(self, node: _Node) -> None:
        step = node.step
        assert isinstance(step, Step)
        concurrency = self._unit_concurrency(node)
        slots = asyncio.Semaphore(concurrency)
        order: asyncio.Queue[tuple[int, asyncio.Future[list[Row]] | list[Row]] | None] = (
            asyncio.Queue()
        )
        store = self.store
        free_replicas: asyncio.Queue[_Step] = asyncio.Queue()
        for replica in node.replicas or [step]:
            free_replicas.put_nowait(replica)
        batch = math.inf if step._is_global else (step.input_batch_size or 50)
        short: set[int] = set()  # re-batched units cut short because the input ended

        async def produce() -> None:
            async for seq, inputs in self._units(node):
                await slots.acquire()
                if node.mode == "rebatch" and max((len(i) for i in inputs), default=0) < batch:
                    short.add(seq)
                if node.progress is not None:
                    node.progress.rows_in += sum(len(i) for i in inputs)
                if store is not None and seq < node.committed:
                    rows = await asyncio.to_thread(store.load_unit, node.signature, seq)
                    await order.put((seq, rows))
                    continue
                future = asyncio.ensure_future(self._process_unit(node, inputs, free_replicas))
                await order.put((seq, future))
            await order.put(None)

        async def emit() -> None:
            held: tuple[int, list[Row], bool] | None = None
            while (item := await order.get()) is not None:
                seq, result = item
                replayed = isinstance(result, list)
                rows = result if isinstance(result, list) else await result
                if held is not None and not held[2]:
                    self._commit(node, held[0], held[1], last=False)
                held = (seq, rows, replayed)
                await self._emit(node, seq, rows, commit=False)
                slots.release()
            if not self._stopping:
                if held is None:
                    self._commit(node, 0, [], last=True)
                else:
                    self._commit(node, held[0], held[1], last=True)
            elif held is not None and not held[2] and held[0] not in short:
                # after a stop, a short trailing batch is not the unit a resumed run rebuilds
                # (it re-batches the same rows into a full one): committing it would lose rows
                self._commit(node, held[0], held[1], last=False)

        producer = asyncio.create_task(produce())
        try:
            await emit()
            await producer
        finally:
            if not producer.done():
                producer.cancel()
        await self._close_outputs(node)

    def _commit(self, node: _Node, seq: int, rows: list[Row], *, last: bool) -> None:
        if self.store is not None:
            self.store.commit_unit(node.signature, seq, rows, step_name=node.name, last=last)

    def _unit_concurrency(self, node: _Node) -> int:
        step = node.step
        if isinstance(step, Task) and isinstance(step.llm, AsyncLLM) and _is_async_task(step):
            batch = max(step.input_batch_size or 50, 1)
            per_unit = batch * (step.num_generations or 1)
            # enough batches in flight that a batch waiting on one retried row never idles the LLM
            return max(4, math.ceil(4 * (step.llm.max_concurrency or 64) / per_unit) + 2)
        return max(1, len(node.replicas) or 1)

    async def _process_unit(
        self, node: _Node, inputs: list[list[Row]], replicas: asyncio.Queue[_Step]
    ) -> list[Row]:
        if _is_async_task(node.step):
            # requests are bounded by the LLM's scheduler, not by copies of the step
            try:
                return await self._call_step(node, node.step, inputs)
            except _STOPS_THE_RUN:
                raise
            except Exception as exc:
                return self._failed_unit(node, inputs, exc)
        step = await replicas.get()
        try:
            return await self._call_step(node, step, inputs)
        except _STOPS_THE_RUN:
            raise
        except Exception as exc:
            return self._failed_unit(node, inputs, exc)
        finally:
            replicas.put_nowait(step)

    async def _call_step(self, node: _Node, step: _Step, inputs: list[list[Row]]) -> list[Row]:
        assert isinstance(step, Step)
        if isinstance(step, Task) and step.uses_default_process():
            rows = merge_rows(inputs)
            if step.input_mappings:
                rows = [step.rename_input_row(r) for r in rows]
            out = await step.aprocess_rows(rows)
            if step.input_mappings or step.output_mappings:
                out = [step.rename_output_row(r) for r in out]
            return out
        arity = step.process_arity()
        args = inputs if arity is None or arity == len(inputs) else [merge_rows(inputs)]
        call: Callable[[], list[Row]] = lambda: _collect(step.process_applying_mappings(*args))  # noqa: E731
        if step._runs_inline:
            return call()
        return await asyncio.to_thread(call)

    def _failed_unit(self, node: _Node, inputs: list[list[Row]], exc: Exception) -> list[Row]:
        step = node.step
        count = self._failures.get(node.name, 0)
        self._failures[node.name] = count + 1
        if node.progress is not None:
            node.progress.failures += sum(len(i) for i in inputs)
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
        rows = []
        for row in merge_rows(inputs):
            new = dict(row)
            for column in outputs:
                new.setdefault(column, None) if column in row else new.__setitem__(column, None)
            rows.append(set_row_error(new, node.name, error))
        return rows


def _prefetch_imports(pipeline: Pipeline) -> None:
    """Import the API SDKs the steps will load in a daemon thread, meanwhile validation,
    signatures and the run store go ahead (an SDK such as openai takes ~0.6 s to import)."""
    modules = {
        module
        for step in pipeline.dag.steps.values()
        if isinstance(step, _Task)
        for module in step.llm.prefetch_modules()
        if module not in sys.modules
    }
    if not modules:
        return

    def prefetch() -> None:
        for module in sorted(modules):
            with contextlib.suppress(Exception):  # load() reports a missing SDK properly
                importlib.import_module(module)

    threading.Thread(target=prefetch, name="alambic-prefetch", daemon=True).start()


def _outputs_imported() -> bool:
    return "datasets" in sys.modules


def _warm_up_outputs() -> None:
    """Import what writing and returning the dataset needs (pyarrow pulls pandas on its first
    conversion), so the first leaf batch and the end of the run do not stall the loop."""
    with contextlib.suppress(Exception):
        from alambic.utils.parquet import rows_to_table

        rows_to_table([{"warm": 1}])
        import datasets  # noqa: F401


def _is_async_task(step: _Step) -> bool:
    """A task whose rows are requests to an API client, run concurrently on the loop."""
    return isinstance(step, Task) and step.uses_default_process() and isinstance(step.llm, AsyncLLM)


def _collect(batches: Iterator[list[Row]]) -> list[Row]:
    rows: list[Row] = []
    for batch in batches:
        if isinstance(batch, dict):
            rows.append(batch)
        else:
            rows.extend(batch)
    return rows


def _rename(row: Row, mappings: dict[str, str]) -> Row:
    return {mappings.get(k, k): v for k, v in row.items()}


def _combine(a: str, b: str) -> str:
    import hashlib

    return hashlib.sha256(f"{a}:{b}".encode()).hexdigest()


def _dataset_fingerprint(data: Any) -> str:
    import hashlib
    import json

    fingerprint = getattr(data, "_fingerprint", None)
    if fingerprint:
        return hashlib.sha256(str(fingerprint).encode()).hexdigest()
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


__all__ = ["LocalExecutor", "merge_rows"]
