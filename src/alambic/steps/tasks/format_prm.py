"""FormatPRM: labelled Math-Shepherd solutions in the layouts process-reward trainers read."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from alambic.errors import METADATA_COLUMN, ColumnTypeError
from alambic.steps.base import Step
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput


class FormatPRM(Step):
    """Turn ``instruction`` + labelled ``solutions`` into process-reward training rows.

    ``solutions`` is what :class:`~alambic.steps.tasks.MathShepherdCompleter` writes (a list
    of solutions, each a list of steps ending with a tag), or a single solution (after
    ``ExpandColumns``); each solution becomes one output row:

    - ``format="math-shepherd"``: ``input`` (the problem and the steps, each tag replaced by
      ``step_token``) and ``label`` (the same text with the tags), the layout of the
      ``peiyi9979/Math-Shepherd`` dataset;
    - ``format="trl"``: ``prompt`` (the problem), ``completions`` (the steps without tags)
      and ``labels`` (``True`` for a good step), the layout of TRL's ``PRMTrainer``.

    Rows whose ``solutions`` is ``None`` (a failed upstream row) are dropped.
    """

    format: Literal["math-shepherd", "trl"] = Field(default="math-shepherd")
    step_token: str = Field(default="ки", description="Marks where a step's label goes.")
    tags: list[str] = Field(default_factory=lambda: ["+", "-"], min_length=2, max_length=2)

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "solutions"]

    @property
    def outputs(self) -> StepColumns:
        if self.format == "trl":
            return ["prompt", "completions", "labels"]
        return ["input", "label"]

    def _split(self, step: str) -> tuple[str, bool]:
        text = step.rstrip()
        for tag, good in ((self.tags[0], True), (self.tags[1], False)):
            if text.endswith(f" {tag}"):
                return text[: -len(tag) - 1].rstrip(), good
        raise ColumnTypeError(
            f"Step {self.name!r} (FormatPRM): the step {step!r:.80} does not end with one of "
            f"the tags {self.tags}; label solutions with MathShepherdCompleter first."
        )

    def _rows(self, row: Row, solution: list[str]) -> Row:
        instruction = row["instruction"]
        parts = [self._split(step) for step in solution]
        base = {k: v for k, v in row.items() if k not in {"solutions", METADATA_COLUMN}}
        if METADATA_COLUMN in row:
            base[METADATA_COLUMN] = row[METADATA_COLUMN]
        if self.format == "trl":
            return {
                **base,
                "prompt": instruction,
                "completions": [text for text, _ in parts],
                "labels": [good for _, good in parts],
            }
        good, bad = self.tags
        steps_input = "\n".join(f"{text} {self.step_token}" for text, _ in parts)
        steps_label = "\n".join(f"{text} {good if ok else bad}" for text, ok in parts)
        return {
            **base,
            "input": f"{instruction} {steps_input}",
            "label": f"{instruction} {steps_label}",
        }

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows: list[Row] = []
        for row in inputs:
            solutions: Any = row.get("solutions")
            if solutions is None:
                continue
            if solutions and all(isinstance(s, str) for s in solutions):
                solutions = [solutions]
            for solution in solutions:
                if not isinstance(solution, list):
                    raise ColumnTypeError(
                        f"Step {self.name!r} (FormatPRM): 'solutions' must hold lists of step "
                        f"texts, got {type(solution).__name__}."
                    )
                rows.append(self._rows(row, solution))
        yield rows


__all__ = ["FormatPRM"]
