"""Helpers shared by the column steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alambic.errors import MissingColumnError
from alambic.steps.typing import Row, StepInput


def merge_metadata(values: Sequence[Any]) -> Any:
    """One metadata value from several rows': dicts are merged, later keys win."""
    dicts = [v for v in values if isinstance(v, dict)]
    if not dicts:
        return next((v for v in values if v is not None), None)
    merged: dict[str, Any] = {}
    for value in dicts:
        merged.update(value)
    return merged


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
