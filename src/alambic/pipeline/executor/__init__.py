"""Executors: what runs a pipeline. See :mod:`alambic.pipeline.executor.base` for the contract
and ``docs/architecture.md`` for how to add one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alambic.pipeline.executor.base import (
    EXECUTORS,
    Executor,
    RunPlan,
    prepare_run,
    resolve_executor,
    retry_kinds,
)
from alambic.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from alambic.pipeline.executor.local import LocalExecutor
    from alambic.pipeline.executor.ray_executor import RayExecutor


_LAZY = {
    "LocalExecutor": "alambic.pipeline.executor.local",
    "RayExecutor": "alambic.pipeline.executor.ray_executor",
}
__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "RunPlan",
    "prepare_run",
    "resolve_executor",
    "retry_kinds",
]
