"""The executor contract: what runs a pipeline, and the pieces every executor shares.

An executor takes a :class:`~alambic.pipeline.Pipeline` and returns a
:class:`~alambic.distiset.Distiset`. The pipeline never imports an executor at module level
(``Pipeline.run`` looks one up by name when called); executors import the pipeline layer and
talk to steps only through the step contract of :mod:`alambic.steps.base` (``kind``,
``runs_inline``, ``processes_rows_async``, ``concurrency_hint``, ``process_batch``,
``aprocess_row``, ``attach_request_cache``, ``aclose``...), never through step classes.

A new executor (Ray, a batch API) subclasses :class:`Executor`, reuses :func:`prepare_run`
(parameters, validation, signatures, the dataset source), :mod:`.graph` (the nodes and how
each is fed), :mod:`.batching` (re-batching, alignment, routing convergence) and
:mod:`.bookkeeping` (the run store, leaf writers, the Distiset), and supplies its own workers.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from alambic.errors import AlambicUserError
from alambic.pipeline.executor.sources import (
    DATASET_SOURCE,
    DatasetSource,
    dataset_columns,
    dataset_fingerprint,
)

if TYPE_CHECKING:
    from alambic.distiset import Distiset
    from alambic.pipeline.base import Pipeline


class Executor(ABC):
    """Runs a pipeline somewhere (this process, a cluster...) and returns its Distiset."""

    name: ClassVar[str]

    @abstractmethod
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
    ) -> Distiset:
        """Run ``pipeline`` (see :meth:`Pipeline.run` for the arguments)."""


EXECUTORS: dict[str, str] = {
    "local": "alambic.pipeline.executor.local:LocalExecutor",
    "ray": "alambic.pipeline.executor.ray_executor:RayExecutor",
}
"""Executor names ``Pipeline.run(executor=...)`` accepts, and where each class lives."""

PLANNED: dict[str, str] = {}


def resolve_executor(executor: Executor | str) -> Executor:
    """An executor instance from an instance or a name (``"local"``)."""
    if isinstance(executor, Executor):
        return executor
    if not isinstance(executor, str):
        raise AlambicUserError(
            f"executor={executor!r} is neither an Executor nor a name: use one of "
            f"{sorted(EXECUTORS)} or an instance such as LocalExecutor()."
        )
    target = EXECUTORS.get(executor)
    if target is None:
        why = PLANNED.get(executor)
        detail = f"the {executor!r} executor {why}" if why else f"no executor is named {executor!r}"
        raise AlambicUserError(
            f"Cannot run with executor={executor!r}: {detail}. Available executors: "
            f"{', '.join(sorted(EXECUTORS))} (pass a name or an Executor instance)."
        )
    module, _, cls = target.partition(":")
    found: type[Executor] = getattr(importlib.import_module(module), cls)
    return found()


@dataclass
class RunPlan:
    """What every executor computes before running: order, signatures, dataset source."""

    order: list[str]
    signatures: dict[str, str]
    source: DatasetSource | None


def prepare_run(
    pipeline: Pipeline, parameters: dict[str, dict[str, Any]] | None, dataset: Any
) -> RunPlan:
    """Apply runtime parameters, check the pipeline and compute the step signatures."""
    pipeline.apply_parameters(parameters)
    has_dataset = dataset is not None
    if has_dataset and isinstance(dataset, list) and not all(isinstance(r, dict) for r in dataset):
        raise AlambicUserError("run(dataset=...) takes a list of dicts or a Hugging Face dataset.")
    order = pipeline.validate(
        dataset_columns=dataset_columns(dataset) if has_dataset else None,
        has_dataset=has_dataset,
    )
    signatures = pipeline.step_signatures(order)
    source: DatasetSource | None = None
    if has_dataset:
        source = DatasetSource(name=DATASET_SOURCE, data=dataset)
        signatures = {DATASET_SOURCE: dataset_fingerprint(dataset), **signatures}
    return RunPlan(order=order, signatures=signatures, source=source)


def retry_kinds(retry_failed: bool | Iterable[str]) -> frozenset[str]:
    """The error kinds whose rows a rerun computes again."""
    from alambic.errors import TRANSIENT_KINDS, ErrorKind

    if retry_failed is True:
        return frozenset(k.value for k in TRANSIENT_KINDS)
    if retry_failed is False:
        return frozenset()
    kinds = frozenset(str(k) for k in retry_failed)
    known = {k.value for k in ErrorKind}
    unknown = sorted(kinds - known)
    if unknown:
        raise AlambicUserError(
            f"retry_failed names unknown error kinds {unknown}: the kinds are {sorted(known)}."
        )
    return kinds


__all__ = ["EXECUTORS", "Executor", "RunPlan", "prepare_run", "resolve_executor", "retry_kinds"]
