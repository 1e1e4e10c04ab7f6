"""Row and column helpers shared by steps and executors."""

from __future__ import annotations

from typing import Any

from alambic.errors import METADATA_COLUMN
from alambic.steps.typing import Row, StepColumns


def normalize_columns(columns: StepColumns) -> dict[str, bool]:
    """A list of columns means all are required; a dict says which are."""
    if isinstance(columns, dict):
        return {str(k): bool(v) for k, v in columns.items()}
    return dict.fromkeys(columns, True)


def normalize_generator_item(item: Any, *, step_name: str) -> tuple[list[Row], bool | None]:
    """Accept a ``(rows, is_last)`` pair, a list of rows or a single row from a generator."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bool):
        rows, last = item
        if isinstance(rows, dict):
            return [rows], last
        return list(rows), last
    if isinstance(item, dict):
        return [item], None
    if isinstance(item, list) and all(isinstance(r, dict) for r in item):
        return item, None
    raise TypeError(
        f"Generator step {step_name!r} yielded {type(item).__name__} {item!r:.200}: yield a "
        "list of rows (dicts), a single row, or a (rows, is_last) pair."
    )


def merge_rows(inputs: list[list[Row]]) -> list[Row]:
    """Row i of the result holds the columns of row i of every input (later inputs win; the
    metadata dicts are merged)."""
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


__all__ = ["merge_rows", "normalize_columns", "normalize_generator_item"]
