"""``ExpandColumns``: one row per element of list columns."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import Field, field_validator

from alambic.errors import METADATA_COLUMN
from alambic.steps.base import Step
from alambic.steps.columns._utils import missing_column
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput


class ExpandColumns(Step):
    """Turns a row whose ``generations`` holds ``n`` values into ``n`` rows with one each.

    ``columns`` lists the list columns (expanded together, so they must have the same length in
    a row) or maps each to a new name (``{"generations": "generation"}``). A row whose lists are
    empty produces no row; a value that is not a list (``None`` from a failed row) is kept as
    one row. ``alambic_metadata`` that is a list as long as the expansion (a task run with
    ``group_generations=True``) is expanded with it; with ``split_statistics=True``, token
    statistics stored as lists (``{"input_tokens": [..], "output_tokens": [..]}``) are split so
    each row keeps its own counts. ``encoded`` names columns (``True``: all of ``columns``)
    that hold a JSON-encoded list, decoded before expanding (as a step that stores lists as
    JSON text produces them).
    """

    columns: dict[str, str] = Field(description="List columns to expand (list, or old -> new).")
    split_statistics: bool = Field(
        default=False, description="Split list-valued token statistics in alambic_metadata."
    )
    encoded: bool | list[str] = Field(
        default=False, description="Columns holding JSON-encoded lists (True: all of them)."
    )

    _runs_inline: ClassVar[bool] = True

    @field_validator("columns", mode="before")
    @classmethod
    def _list_to_dict(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return {str(c): str(c) for c in value}
        return value

    @property
    def inputs(self) -> StepColumns:
        return list(self.columns)

    @property
    def outputs(self) -> StepColumns:
        return list(self.columns.values())

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        out: list[Row] = []
        for row in inputs:
            out.extend(self._expand(row))
        yield out

    def _decoded(self, row: Row) -> Row:
        names = list(self.columns) if self.encoded is True else list(self.encoded or [])
        if not names:
            return row
        row = dict(row)
        for column in names:
            value = row.get(column)
            if isinstance(value, str):
                try:
                    row[column] = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"Step {self.step_name!r}: column {column!r} is listed in encoded= but "
                        f"holds text that is not JSON ({exc}): {value!r:.80}"
                    ) from exc
        return row

    def _expand(self, row: Row) -> list[Row]:
        row = self._decoded(row)
        lengths = {}
        for column in self.columns:
            if column not in row:
                raise missing_column(self.step_name, column, row)
            value = row[column]
            lengths[column] = len(value) if isinstance(value, list) else None
        sized = {c: n for c, n in lengths.items() if n is not None}
        if len(set(sized.values())) > 1:
            raise ValueError(
                f"Step {self.step_name!r}: the columns expanded together must hold lists of the "
                f"same length in each row, got lengths {sized}. Use one ExpandColumns per column."
            )
        n = next(iter(sized.values()), 1)
        base = {k: v for k, v in row.items() if k not in self.columns}
        rows = []
        for i in range(n):
            new = dict(base)
            for column, target in self.columns.items():
                value = row[column]
                new[target] = value[i] if lengths[column] is not None else value
            if METADATA_COLUMN in row:
                new[METADATA_COLUMN] = self._metadata(row[METADATA_COLUMN], i, n)
            rows.append(new)
        return rows

    def _metadata(self, meta: Any, i: int, n: int) -> Any:
        if isinstance(meta, list) and len(meta) == n:
            return meta[i]
        if isinstance(meta, dict) and self.split_statistics:
            split = dict(meta)
            for key, value in meta.items():
                if key.startswith("statistics_") and isinstance(value, dict):
                    split[key] = {
                        k: (v[i] if isinstance(v, list) and len(v) == n else v)
                        for k, v in value.items()
                    }
            return split
        return meta


__all__ = ["ExpandColumns"]
