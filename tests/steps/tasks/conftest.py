"""Fixtures for the generation-task tests: run a task standalone, read a row's error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alambic.steps.tasks.base import METADATA_COLUMN, Task


def _run_task(task: Task, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    task.load()
    try:
        batches = list(task.process(rows))
    finally:
        task.unload()
    return [row for batch in batches for row in batch]


def _error_of(row: dict[str, Any], name: str) -> dict[str, Any] | None:
    meta = row[METADATA_COLUMN]
    if isinstance(meta, list):
        meta = meta[0]
    error: dict[str, Any] | None = meta.get(f"error_{name}")
    return error


@pytest.fixture
def run_task() -> Callable[..., list[dict[str, Any]]]:
    """Load a task, run ``process`` on rows and return every row it yields."""
    return _run_task


@pytest.fixture
def error_of() -> Callable[..., dict[str, Any] | None]:
    """The error recorded for task ``name`` on a row, or ``None``."""
    return _error_of
