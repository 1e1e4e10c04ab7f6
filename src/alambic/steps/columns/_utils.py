"""Helpers shared by the column steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alambic.errors import METADATA_COLUMN, MissingColumnError
from alambic.steps.typing import Row, StepInput


def merge_metadata(values: Sequence[Any]) -> Any:
    """One metadata value from several rows', as distilabel merges it: a key found in one
    row keeps its value, a key found in several becomes the list of their values (in row
    order), so nothing is lost and scripts keyed on distilabel's shape keep working."""
    dicts = [v for v in values if isinstance(v, dict)]
    if not dicts:
        return next((v for v in values if v is not None), None)
    gathered: dict[str, list[Any]] = {}
    for value in dicts:
        for key, item in value.items():
            gathered.setdefault(key, []).append(item)
    return {key: items[0] if len(items) == 1 else items for key, items in gathered.items()}


def merge_alambic_metadata(*rows: Row, column: str = METADATA_COLUMN) -> dict[str, Any]:
    """The ``alambic_metadata`` of several rows merged into one dict (distilabel's
    ``merge_distilabel_metadata``): keys in one row keep their value, keys in several become
    lists. Use it in a custom step that combines rows."""
    merged = merge_metadata([row.get(column) for row in rows if isinstance(row.get(column), dict)])
    return merged if isinstance(merged, dict) else {}


def aligned_rows(step: str, inputs: Sequence[StepInput]) -> list[tuple[Row, ...]]:
    """Row ``i`` of every input batch together; batches of different lengths are an error."""
    lengths = [len(batch) for batch in inputs]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"Step {step!r} combines its inputs row by row, but their batches hold different "
            f"numbers of rows {lengths}. Each predecessor must produce one row per input row "
            "(a task with num_generations > 1 needs group_generations=True before this step)."
        )
    return list(zip(*inputs, strict=True))


def missing_column(step: str, column: str, row: Row) -> MissingColumnError:
    return MissingColumnError(
        f"Step {step!r} needs column {column!r}, which this row lacks; it has {list(row)}. "
        "Produce the column in an earlier step or rename it with input_mappings."
    )
