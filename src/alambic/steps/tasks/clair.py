"""CLAIR: preference pairs from minimal revisions of an answer.

D'Oosterlinck et al., 2024, "Anchored Preference Optimization and Contrastive Revisions:
Addressing Underspecification in Alignment" (https://arxiv.org/abs/2408.06266). A stronger
model revises a student model's answer as little as possible; the answer and its revision
differ only where the answer was wrong, which gives a contrastive preference pair (revision
preferred) for training methods such as APO.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from alambic.llms.typing import ChatType
from alambic.steps.checks import require_text
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, parse_sections, preview
from alambic.steps.tasks._templates import template_source
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

SYSTEM_PROMPT: str = template_source("clair", "system").strip()
"""CLAIR's system prompt (alambic's wording), under distilabel's name; the user message is
``templates/clair.jinja2`` (``task``, ``student_solution``)."""

_SYSTEM = SYSTEM_PROMPT


class CLAIR(LenientFormatOutput, Task):
    """Revise ``student_solution`` to ``task`` minimally: ``revision`` and ``rational``.

    ``rational`` (the reference's spelling) holds the teacher's reasoning, ``revision`` the
    corrected answer. The reply needs a "Corrected answer" section (a "Revision" heading is
    accepted too); the reasoning section may be missing (``rational`` is then empty). A
    reply with no corrected answer, or an empty one, is a failed row.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("", "clair")

    system_prompt: str = Field(default=_SYSTEM, description="The teacher's instructions.")

    @property
    def inputs(self) -> StepColumns:
        return ["task", "student_solution"]

    @property
    def outputs(self) -> StepColumns:
        return ["revision", "rational", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        content = self.render_prompt(
            "",
            "clair",
            task=require_text(self.name, "task", input.get("task"), kind="CLAIR"),
            student_solution=require_text(
                self.name, "student_solution", input.get("student_solution"), kind="CLAIR"
            ),
        )
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": content},
        ]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        labels = ["Reasoning", "Corrected answer", "Corrected solution", "Revision"]
        sections = parse_sections(output, labels)
        revision = next((sections[k] for k in labels[1:] if sections.get(k, "").strip()), None)
        if revision is None:
            raise ReplyParseError(
                f"the reply has no '## Corrected answer' section: {preview(output)!r}"
            )
        return {"revision": revision.strip(), "rational": sections.get("Reasoning", "").strip()}


__all__ = ["CLAIR"]
