"""The run store, the leaf writers and the returned Distiset: what an executor records.

Shared by every executor: which units each step has committed (and so skips on resume),
committing new ones, writing leaf rows to parquet as they come, and building the Distiset.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alambic import settings
from alambic.errors import row_errors
from alambic.pipeline.executor.graph import Node
from alambic.pipeline.executor.sources import DATASET_SOURCE, combine
from alambic.steps.typing import Row

logger = logging.getLogger("alambic")

if TYPE_CHECKING:
    from alambic.distiset import Distiset
    from alambic.pipeline.base import Pipeline
    from alambic.pipeline.store import RequestCacheStore, RunStore
    from alambic.pipeline.store.reserve import DiskReserve


class RunBookkeeping:
    """The run store, request cache and leaf writers of one run."""

    def __init__(self, pipeline: Pipeline, nodes: dict[str, Node]) -> None:
        self.pipeline = pipeline
        self.nodes = nodes
        self.store: RunStore | None = None
        self.request_cache: RequestCacheStore | None = None
        self.reserve: DiskReserve | None = None
        self.data_dir: Path | None = None
        self.tmp_dir: Path | None = None
        self.writers: dict[str, Any] = {}
        self.forced: dict[str, bool] = {}
        self.retrying = False
        self.failed_rows = 0  # rows with an error among those written to the leaves
        self.spend: list[dict[str, Any]] | None = None  # per (step, model), kept by the store

    def open(
        self,
        signatures: dict[str, str],
        *,
        storage: bool,
        use_cache: bool,
        retry: frozenset[str] = frozenset(),
    ) -> None:
        """Open (or create) the run store and request cache; decide what each step reuses.

        A step whose committed rows failed with an error kind in ``retry`` is computed again
        from its first such unit (answers already received come from the request cache), and
        every step after it is computed again on the new rows.
        """
        cache_dir = self.pipeline.cache_dir or settings.cache_dir()
        if not storage:
            self.tmp_dir = Path(tempfile.mkdtemp(prefix="alambic-run-"))
            self.data_dir = self.tmp_dir / "data"
            return
        from alambic.pipeline.store import RequestCacheStore, RunStore, request_cache_path
        from alambic.pipeline.store.reserve import DiskReserve

        reserve = DiskReserve(cache_dir, settings.disk_reserve_bytes())
        reserve.ensure()  # before any write: a full disk must find it whole
        self.reserve = reserve
        pipeline_signature = self.pipeline.signature()
        if DATASET_SOURCE in signatures:
            pipeline_signature = combine(pipeline_signature, signatures[DATASET_SOURCE])
        self.store = RunStore.open(
            cache_dir=cache_dir,
            pipeline_name=self.pipeline.name,
            pipeline_signature=pipeline_signature,
            pipeline_yaml=self.pipeline.to_yaml(),
            lock_timeout=settings.lock_timeout(),
            reserve=reserve,
        )
        self.data_dir = self.store.run_dir / "data"
        if settings.request_cache_enabled():
            shared = settings.share_request_cache()
            path = request_cache_path(cache_dir, None if shared else self.store.run_dir)
            self.request_cache = RequestCacheStore.open(path, reserve=reserve)
        self.store.begin_run()
        for name, node in self.nodes.items():
            step = node.step
            self.store.record_step(node.signature, name, step.dump())
            upstream_forced = any(self.forced.get(p, False) for p in node.preds)
            force_here = (
                not use_cache
                or not step.use_cache
                or upstream_forced
                or bool(self.forced.get(name))
            )
            self.forced[name] = force_here
            if force_here:
                self.store.invalidate_step(node.signature)
                node.committed = 0
                continue
            node.committed = self.store.committed_units(node.signature)
            first = self._first_unit_to_retry(node, retry)
            if first is not None:
                logger.info(
                    "Step %r: rows of unit %d failed with a kind retried on rerun (%s): "
                    "computing it and what follows again (retry_failed=False keeps them).",
                    name,
                    first,
                    ", ".join(sorted(retry)),
                )
                node.committed = first
                self.retrying = True
                for succ in node.succs:
                    self.forced[succ] = True  # successors see new rows: recomputed whole

    def _first_unit_to_retry(self, node: Node, retry: frozenset[str]) -> int | None:
        """The first committed unit of ``node`` holding a row it failed with a retried kind."""
        if not retry or node.step.is_generator or self.store is None:
            return None
        for seq in range(node.committed):
            for row in self.store.load_unit(node.signature, seq):
                error = row_errors(row).get(node.name)
                if error is not None and error.get("kind") in retry:
                    return seq
        return None

    def already_finished(self) -> bool:
        """Every step finished and every leaf's data complete: the result can be returned."""
        assert self.store is not None
        assert self.data_dir is not None
        if self.retrying:
            return False
        for node in self.nodes.values():
            if not self.store.step_finished(node.signature):
                return False
        leaves = [n for n, node in self.nodes.items() if not node.succs]
        return all((self.data_dir / leaf / "_COMPLETE").exists() for leaf in leaves)

    def commit(
        self,
        node: Node,
        seq: int,
        rows: list[Row],
        *,
        last: bool,
        source_rows: int | None = None,
    ) -> None:
        if self.store is not None:
            self.store.commit_unit(
                node.signature, seq, rows, step_name=node.name, source_rows=source_rows, last=last
            )

    def prepare_writers(self) -> None:
        """A parquet writer per leaf step, in a fresh folder."""
        from alambic.utils.parquet import ParquetRowWriter

        assert self.data_dir is not None
        for name, node in self.nodes.items():
            if node.succs:
                continue
            directory = self.data_dir / name
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            self.writers[name] = ParquetRowWriter(directory)

    def finish_writers(self, *, complete: bool) -> None:
        """Close the leaf writers; mark their data complete unless the run was stopped."""
        assert self.data_dir is not None
        for name, writer in self.writers.items():
            writer.close()
            if complete:
                (self.data_dir / name / "_COMPLETE").touch()
        self.writers.clear()

    def finish_run(self, status: str, *, replayed: bool = False) -> None:
        """Record the run's status and, when it finished, how many output rows failed
        (``replayed``: the stored result was returned as it is, with its earlier count)."""
        if self.store is None:
            return
        failed: int | None = None
        if status == "finished":
            failed = self.store.failed_rows() if replayed else self.failed_rows
        if replayed:
            self.spend = []  # nothing was sent
        self.store.finish_run(status, failed_rows=failed, spend=self.spend)

    def close(self) -> None:
        for writer in self.writers.values():
            with contextlib.suppress(Exception):  # already failing: the first error wins
                writer.close()
        try:
            if self.request_cache is not None:
                self.request_cache.close()  # raises if answers stayed unwritten (disk full)
        finally:
            if self.store is not None:
                self.store.close()
            if self.tmp_dir is not None:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def distiset(self) -> Distiset:
        from alambic.distiset import Distiset

        assert self.data_dir is not None
        leaves = [n for n, node in self.nodes.items() if not node.succs]
        dirs = {leaf: self.data_dir / leaf for leaf in leaves}
        return Distiset.from_parquet(
            dirs,
            pipeline_yaml=self.pipeline.to_yaml(),
            keep_metadata=self.pipeline.enable_metadata,
        )


__all__ = ["RunBookkeeping"]
