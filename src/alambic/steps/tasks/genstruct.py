"""Genstruct: a user question and its answer grounded in a document.

NousResearch, 2024, "Genstruct 7B" (https://huggingface.co/NousResearch/Genstruct-7B), after
Ada-Instruct (Cui and Wang, 2023, https://arxiv.org/abs/2310.04484). The model reads a titled
passage and writes an exchange that the passage supports, so instruction data can be made
from any raw corpus. The prompt uses the ``[[[Title]]]`` / ``[[[Content]]]`` / ``[[[User]]]``
/ ``[[[Assistant]]]`` markers the Genstruct model was trained on; it also works with general
chat models.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field

from alambic.llms.typing import ChatType
from alambic.steps.checks import require_text
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, preview
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

_USER = re.compile(r"\[\[\[\s*user\s*\]\]\]", re.IGNORECASE)
_ASSISTANT = re.compile(r"\[\[\[\s*assistant\s*\]\]\]", re.IGNORECASE)
_OTHER_MARKER = re.compile(r"\[\[\[\s*(?:title|content)\s*\]\]\]", re.IGNORECASE)


class Genstruct(LenientFormatOutput, Task):
    """Write a user/assistant exchange grounded in ``title`` and ``content``.

    Output columns ``user`` and ``assistant``. The reply must contain the ``[[[Assistant]]]``
    marker that separates the question from the answer (any ``[[[User]]]`` marker before the
    question is removed); a reply without it, or with an empty side, is a failed row.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("", "genstruct")

    system_prompt: str | None = Field(default=None, description="Optional system message.")

    @property
    def inputs(self) -> StepColumns:
        return ["title", "content"]

    @property
    def outputs(self) -> StepColumns:
        return ["user", "assistant", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        values = {
            column: require_text(self.name, column, input.get(column), kind="Genstruct")
            for column in ("title", "content")
        }
        messages: ChatType = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.render_prompt("", "genstruct", **values)})
        return messages

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        parts = _ASSISTANT.split(output, maxsplit=1)
        if len(parts) != 2:
            raise ReplyParseError(
                "the reply has no '[[[Assistant]]]' marker separating the user's question from "
                f"the answer: {preview(output)!r}"
            )
        question, answer = parts
        question = _USER.split(question)[-1].strip()
        answer = _USER.split(answer, maxsplit=1)[0]
        answer = _OTHER_MARKER.split(answer, maxsplit=1)[0].strip()
        if not question or not answer:
            side = "question" if not question else "answer"
            raise ReplyParseError(f"the reply has an empty {side}: {preview(output)!r}")
        return {"user": question, "assistant": answer}


__all__ = ["Genstruct"]
