"""``LoadDataFromDicts``: rows given in Python, the usual first step of a pipeline."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from alambic.steps.base import GeneratorStep
from alambic.steps.typing import GeneratorOutput, StepColumns


class LoadDataFromDicts(GeneratorStep):
    """Produces the rows of ``data`` in batches of ``batch_size``.

    Its output columns are the keys of the first row, so the pipeline can check what the next
    steps read before running. Each produced row is a shallow copy: steps may add keys to it
    without touching ``data``, but nested lists and dicts are shared (do not mutate them in
    place). A resumed run starts directly at the first row not yet committed.
    """

    data: list[dict[str, Any]] = Field(description="The rows to produce, as dicts.")

    _runs_inline: ClassVar[bool] = True

    @property
    def outputs(self) -> StepColumns:
        return list(self.data[0]) if self.data else []

    def process(self, offset: int = 0) -> GeneratorOutput:
        data = self.data
        size = self.batch_size or 50
        total = len(data)
        if offset >= total:
            yield [], True
            return
        mappings = self.output_mappings
        for start in range(offset, total, size):
            chunk = data[start : start + size]
            if mappings:
                rows = [{mappings.get(k, k): v for k, v in row.items()} for row in chunk]
            else:
                rows = [dict(row) for row in chunk]
            yield rows, start + size >= total


__all__ = ["LoadDataFromDicts"]
