"""QualityScorer: rank and score several responses to one instruction by quality (Deita).

Method of Liu et al., "What Makes Good Data for Alignment? A Comprehensive Study of
Automatic Data Selection in Instruction Tuning" (Deita, 2023, arXiv:2312.15685), section
"EVOL QUALITY": responses to the same instruction (typically a response and variants of it
evolved to be better) are shown to an LLM together, which ranks them and gives each a
quality score. The prompt is alambic's own wording of that method.
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


class QualityScorer(LenientFormatOutput, DefaultStructuredOutput, Task):
    """Score each of the row's ``responses`` (a list) to its ``instruction`` by quality.

    Output ``scores``: one number per response, in order, from 1 (worst) to the number of
    responses (best); they rank the responses *within the row*. Feed them to
    ``DeitaFiltering`` as ``evol_response_score``, or to ``FormatTextGenerationDPO`` with
    ``input_mappings={"ratings": "scores", "generations": "responses"}``. A score the judge
    left out or gave out of range is ``None``; a reply with no score at all makes a failed row.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("", "quality-scorer")

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "responses"]

    @property
    def outputs(self) -> StepColumns:
        return ["scores", "model_name"]

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        instruction = input.get("instruction")
        responses = input.get("responses")
        if not isinstance(instruction, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (QualityScorer): column 'instruction' must hold text, "
                f"got {type(instruction).__name__} {instruction!r:.80}."
            )
        if (
            not isinstance(responses, list)
            or not responses
            or not all(isinstance(r, str) for r in responses)
        ):
            raise ColumnTypeError(
                f"Step {self.name!r} (QualityScorer): column 'responses' must be a non-empty "
                f"list of texts, got {responses!r:.120}. Map a 'generations' column with "
                "input_mappings={'responses': 'generations'}."
            )
        prompt = self.render_prompt(
            "", "quality-scorer", instruction=instruction, responses=responses
        )
        messages: ChatType = [{"role": "user", "content": prompt}]
        return self.with_structured_output(messages)

    def empty_output(self, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """One ``None`` per response (distilabel's shape for a missing reply)."""
        return per_item_none(input, "responses", ["scores"])

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        responses = (input or {}).get("responses")
        if output is None or not isinstance(responses, list):
            return {"scores": None}
        n = len(responses)
        data = self.structured_reply(output)
        if data is not None and "scores" in data:
            return {"scores": fit_list(data["scores"], n, (int, float))}
        return {"scores": parse_indexed_scores(output, n, 1, n)}

    def get_structured_output(self) -> dict[str, Any]:
        """``{"scores": [int, ...]}``, one score per item."""
        return array_schema(
            "SchemaQualityScorer", scores={"type": "array", "items": {"type": "integer"}}
        )


__all__ = ["QualityScorer"]
