"""ComplexityScorer: rank and score a list of instructions by complexity (Deita).

Method of Liu et al., "What Makes Good Data for Alignment? A Comprehensive Study of
Automatic Data Selection in Instruction Tuning" (Deita, 2023, arXiv:2312.15685), section
"EVOL COMPLEXITY": an instruction and variants of it evolved to be harder are shown to an LLM
together, which ranks them and gives each a score; seeing the set at once makes the scores
far more discriminating than scoring each instruction alone. The prompt is alambic's own
wording of that method.
"""

from __future__ import annotations

from typing import Any, ClassVar

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatType, FormattedInput
from alambic.steps.tasks._judge_parsing import parse_indexed_scores
from alambic.steps.tasks._lenient import (
    DefaultStructuredOutput,
    LenientFormatOutput,
    array_schema,
    fit_list,
    per_item_none,
)
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns


class ComplexityScorer(LenientFormatOutput, DefaultStructuredOutput, Task):
    """Score each of the row's ``instructions`` (a list) by complexity.

    Output ``scores``: one number per instruction, in order, from 1 (simplest) to the number
    of instructions (most complex), or one more for "too complex to answer". The scores rank
    the instructions *within the list*; feed them to ``DeitaFiltering`` as
    ``evol_instruction_score``. A score the judge left out or gave out of range is ``None``;
    a reply with no score at all makes a failed row.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("", "complexity-scorer")

    @property
    def inputs(self) -> StepColumns:
        return ["instructions"]

    @property
    def outputs(self) -> StepColumns:
        return ["scores", "model_name"]

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        instructions = input.get("instructions")
        if (
            not isinstance(instructions, list)
            or not instructions
            or not all(isinstance(i, str) for i in instructions)
        ):
            raise ColumnTypeError(
                f"Step {self.name!r} (ComplexityScorer): column 'instructions' must be a "
                f"non-empty list of texts, got {instructions!r:.120}. To score one instruction per "
                "row, make it a one-element list first, e.g. MergeColumns(columns="
                "['instruction'], output_column='instructions')."
            )
        prompt = self.render_prompt("", "complexity-scorer", instructions=instructions)
        messages: ChatType = [{"role": "user", "content": prompt}]
        return self.with_structured_output(messages)

    def empty_output(self, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """One ``None`` per instruction (distilabel's shape for a missing reply)."""
        return per_item_none(input, "instructions", ["scores"])

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        instructions = (input or {}).get("instructions")
        if output is None or not isinstance(instructions, list):
            return {"scores": None}
        n = len(instructions)
        data = self.structured_reply(output)
        if data is not None and "scores" in data:
            return {"scores": fit_list(data["scores"], n, (int, float))}
        return {"scores": parse_indexed_scores(output, n, 1, n + 1)}

    def get_structured_output(self) -> dict[str, Any]:
        """``{"scores": [int, ...]}``, one score per item."""
        return array_schema(
            "SchemaComplexityScorer", scores={"type": "array", "items": {"type": "integer"}}
        )


__all__ = ["ComplexityScorer"]
