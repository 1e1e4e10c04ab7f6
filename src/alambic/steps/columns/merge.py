"""``MergeColumns``: several columns of a row into one list column."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from alambic.steps.base import Step
from alambic.steps.columns._utils import missing_column
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput


class MergeColumns(Step):
    """Writes ``output_column`` = the values of ``columns``, in order, as one list.

    A value that is a list is spliced in (``["a", "b"]`` and ``"c"`` give ``["a", "b", "c"]``),
    so responses already grouped by a task merge with single ones; ``None`` is kept as an
    element. The source columns are removed, as distilabel removes them;
    ``keep_source_columns=True`` keeps them.
    """

    columns: list[str] = Field(min_length=1, description="Columns to merge, in order.")
    output_column: str = Field(default="merged_column", description="Name of the list column.")
    keep_source_columns: bool = Field(
        default=False, description="Keep the merged columns in the row (distilabel drops them)."
    )

    _runs_inline: ClassVar[bool] = True

    @property
    def inputs(self) -> StepColumns:
        return list(self.columns)

    @property
    def outputs(self) -> StepColumns:
        return [self.output_column]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        out: list[Row] = []
        for row in inputs:
            merged: list[Any] = []
            for column in self.columns:
                if column not in row:
                    raise missing_column(self.step_name, column, row)
                value = row[column]
                if isinstance(value, list):
                    merged.extend(value)
                else:
                    merged.append(value)
            new = dict(row)
            if not self.keep_source_columns:
                for column in self.columns:
                    new.pop(column, None)
            new[self.output_column] = merged
            out.append(new)
        yield out


__all__ = ["MergeColumns"]
