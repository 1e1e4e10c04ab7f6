"""``KeepColumns``: keep some columns, in a chosen order, and drop the rest."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from alambic.steps.base import Step
from alambic.steps.columns._utils import missing_column
from alambic.steps.typing import StepColumns, StepInput, StepOutput


class KeepColumns(Step):
    """Rows with only ``columns``, in that order (e.g. before saving, to drop working columns).

    Every column listed must exist: the pipeline checks it before running. Keep
    ``alambic_metadata`` by listing it.
    """

    columns: list[str] = Field(min_length=1, description="Columns to keep, in output order.")

    _runs_inline: ClassVar[bool] = True

    @property
    def inputs(self) -> StepColumns:
        return list(self.columns)

    @property
    def outputs(self) -> StepColumns:
        return list(self.columns)

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        columns = self.columns
        try:
            yield [{c: row[c] for c in columns} for row in inputs]
        except KeyError as exc:
            row = next(r for r in inputs if exc.args[0] not in r)
            raise missing_column(self.step_name, exc.args[0], row) from exc


__all__ = ["KeepColumns"]
