"""Kept for imports written before the executor package: the local executor now lives in
:mod:`alambic.pipeline.executor.local`."""

from __future__ import annotations

from alambic.pipeline.executor.local import LocalExecutor, LocalRun
from alambic.steps.base import merge_rows

__all__ = ["LocalExecutor", "LocalRun", "merge_rows"]
