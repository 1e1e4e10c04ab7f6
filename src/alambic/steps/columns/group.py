"""``GroupColumns``: gather a column from several branches into one list column."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from alambic.errors import METADATA_COLUMN
from alambic.steps.base import Step
from alambic.steps.columns._utils import aligned_rows, merge_metadata
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput


class GroupColumns(Step):
    """Turns ``generation`` from three LLM branches into ``grouped_generation``, a list of three.

    Row ``i`` of every predecessor is one group: each of ``columns`` becomes a list of its values
    in predecessor order (``None`` where a branch lacks it), named ``output_columns`` or
    ``grouped_<column>``. The source columns are removed; the other columns come from the first
    predecessor's row, and ``alambic_metadata`` dicts are merged (a key several rows carry
    becomes a list, as in distilabel). Typical before a judge that
    compares responses (UltraFeedback's ``generations`` plus ``generation_models``).
    """

    columns: list[str] = Field(min_length=1, description="Columns to group.")
    output_columns: list[str] | None = Field(
        default=None, description="Names of the grouped columns (default: grouped_<column>)."
    )

    _runs_inline: ClassVar[bool] = True

    @model_validator(mode="after")
    def _check_lengths(self) -> GroupColumns:
        if self.output_columns is not None and len(self.output_columns) != len(self.columns):
            raise ValueError(
                f"GroupColumns: output_columns {self.output_columns} must name one column per "
                f"grouped column {self.columns}."
            )
        return self

    @property
    def inputs(self) -> StepColumns:
        return list(self.columns)

    @property
    def outputs(self) -> StepColumns:
        if self.output_columns is not None:
            return list(self.output_columns)
        return [f"grouped_{c}" for c in self.columns]

    def process(self, *inputs: StepInput) -> StepOutput:
        targets = self.outputs
        assert isinstance(targets, list)
        grouped = set(self.columns)
        out: list[Row] = []
        for group in aligned_rows(self.step_name, inputs):
            row: dict[str, Any] = {k: v for k, v in group[0].items() if k not in grouped}
            for column, target in zip(self.columns, targets, strict=True):
                row[target] = [part.get(column) for part in group]
            metas = [part[METADATA_COLUMN] for part in group if METADATA_COLUMN in part]
            if metas:
                row[METADATA_COLUMN] = merge_metadata(metas)
            out.append(row)
        yield out


__all__ = ["GroupColumns"]
