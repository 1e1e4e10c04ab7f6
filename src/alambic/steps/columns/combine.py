"""``CombineOutputs``: join the rows of several branches into one row each."""

from __future__ import annotations

from typing import Any, ClassVar

from alambic.errors import METADATA_COLUMN
from alambic.steps.base import Step
from alambic.steps.columns._utils import aligned_rows, merge_metadata
from alambic.steps.typing import Row, StepInput, StepOutput


class CombineOutputs(Step):
    """Merges row ``i`` of each predecessor into one row.

    Connect it after parallel branches that each add columns to the same rows (``a >> [b, c] >>
    combine``): the output row has the columns of all of them; for a column present in several,
    the last predecessor's value wins, except ``alambic_metadata``, whose dicts are merged as
    distilabel merges them: a key from one branch keeps its value, a key several branches
    carry becomes the list of their values (``merge_alambic_metadata``). Predecessors must produce
    the same number of rows per batch.
    """

    _runs_inline: ClassVar[bool] = True

    def process(self, *inputs: StepInput) -> StepOutput:
        out: list[Row] = []
        for group in aligned_rows(self.step_name, inputs):
            row: dict[str, Any] = {}
            for part in group:
                row.update(part)
            metas = [part[METADATA_COLUMN] for part in group if METADATA_COLUMN in part]
            if metas:
                row[METADATA_COLUMN] = merge_metadata(metas)
            out.append(row)
        yield out


__all__ = ["CombineOutputs"]
