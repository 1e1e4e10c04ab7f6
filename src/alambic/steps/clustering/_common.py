"""What the clustering steps share: lazy optional imports and reading a vector column."""

from __future__ import annotations

import importlib
from typing import Any

from alambic.errors import ColumnTypeError, MissingDependencyError
from alambic.steps.typing import Row


def import_optional(module: str, package: str, step: str | None, kind: str) -> Any:
    """``module`` imported, or a :class:`MissingDependencyError` saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"Step {step!r} ({kind})", package, "clustering") from exc


def vectors(rows: list[Row], column: str, step: str | None, kind: str) -> Any:
    """The ``column`` of every row as a 2-D float array (one row per input row)."""
    import numpy as np

    width: int | None = None
    for i, row in enumerate(rows):
        value = row.get(column)
        if not isinstance(value, (list, tuple)) or not value:
            raise ColumnTypeError(
                f"Step {step!r} ({kind}): row {i} column {column!r} must be a non-empty list "
                f"of numbers, got {type(value).__name__} {value!r:.80}."
            )
        if width is None:
            width = len(value)
        elif len(value) != width:
            raise ColumnTypeError(
                f"Step {step!r} ({kind}): row {i} column {column!r} has {len(value)} values "
                f"but row 0 has {width}; every vector must have the same length."
            )
    return np.asarray([row[column] for row in rows], dtype=np.float64)
