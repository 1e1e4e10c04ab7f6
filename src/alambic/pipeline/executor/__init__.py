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

if TYPE_CHECKING:
    from alambic.pipeline.executor.local import LocalExecutor
    from alambic.pipeline.executor.ray_executor import RayExecutor


def __getattr__(name: str) -> object:
    if name == "LocalExecutor":
        from alambic.pipeline.executor.local import LocalExecutor

        return LocalExecutor
    if name == "RayExecutor":
        from alambic.pipeline.executor.ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
