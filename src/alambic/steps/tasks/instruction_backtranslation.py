"""Instruction backtranslation: rate how well a response answers an instruction (1-5).

Li et al., 2023, "Self-Alignment with Instruction Backtranslation"
(https://arxiv.org/abs/2308.06259). In the paper a model writes instructions for web texts
(backtranslation) and then curates the pairs itself, scoring each on a five-point scale from
"off-topic or incomplete" to "a perfect AI-assistant answer"; only high-scoring pairs are kept.
This task is that self-curation step.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field

from alambic.llms.typing import ChatType
from alambic.steps.checks import require_text
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, parse_score
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

_SCORE_LABEL = re.compile(
    r"(?i)[*_]*\b(?:score|rating)\b[*_ \t]*[:=][*_ \t]*-?\d+(?:\.\d+)?(?:[ \t]*(?:/|out of)[ \t]*5)?[*_.]*"
)


class InstructionBacktranslation(LenientFormatOutput, Task):
    """Score an ``instruction``/``generation`` pair from 1 to 5, with the reason.

    Output columns ``score`` (an ``int`` from 1 to 5) and ``reason`` (the model's explanation,
    without the score line). A reply with no score in range is a failed row.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("", "instruction-backtranslation")

    system_prompt: str | None = Field(default=None, description="Optional system message.")

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "generation"]

    @property
    def outputs(self) -> StepColumns:
        return ["score", "reason", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        values = {
            column: require_text(
                self.name, column, input.get(column), kind="InstructionBacktranslation"
            )
            for column in ("instruction", "generation")
        }
        messages: ChatType = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append(
            {
                "role": "user",
                "content": self.render_prompt("", "instruction-backtranslation", **values),
            }
        )
        return messages

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        score = parse_score(output, low=1, high=5)
        # the reason is the reply without its score label (a sentence that merely mentions
        # "score" stays, as does the text before "Score: N" on the same line)
        reason = _SCORE_LABEL.sub("", output).strip()
        reason = re.sub(r"(?i)^\W*(?:reason(?:ing)?|explanation)\W*:\W*", "", reason).strip()
        return {"score": int(score), "reason": reason or None}


__all__ = ["InstructionBacktranslation"]
