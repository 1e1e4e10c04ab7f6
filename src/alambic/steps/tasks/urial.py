"""URIAL: answers from a base (not instruction-tuned) model, by in-context alignment.

Lin et al., 2024, "The Unlocking Spell on Base LLMs: Rethinking Alignment via In-Context
Learning" (https://arxiv.org/abs/2312.01552). A base model follows instructions well enough
when the prompt opens with a short description of a helpful assistant and a few stylistic
example exchanges, in a plain-text layout the model just continues. No tuning needed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatType, GenerateOutput
from alambic.steps.checks import ROLES
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, preview
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns, StepInput, StepOutput

_FENCE = "```"


class URIAL(LenientFormatOutput, Task):
    """Answer ``instruction`` (or continue ``conversation``) with a base model: ``generation``.

    The prompt is plain text: the URIAL preamble, two example exchanges, the conversation,
    and an open assistant turn. With an LLM that can complete raw text
    (``supports_raw_completion``: transformers, vLLM, llama.cpp) the prompt is sent as is,
    with no chat template, which is what a base model needs; otherwise it is sent as one user
    message. The answer ends at the closing fence or at the next turn the model starts.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("", "urial")

    @property
    def inputs(self) -> StepColumns:
        return {"instruction": False, "conversation": False}

    @property
    def outputs(self) -> StepColumns:
        return ["generation", "model_name"]

    def _conversation(self, input: dict[str, Any]) -> list[dict[str, str]]:
        conversation = input.get("conversation")
        if conversation is not None:
            if not isinstance(conversation, list) or not all(
                isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
                for m in conversation
            ):
                raise ColumnTypeError(
                    f"Step {self.name!r} (URIAL): column 'conversation' must be a list of "
                    f"{{'role', 'content'}} messages, got {conversation!r:.80}."
                )
            return [{"role": m["role"], "content": m["content"]} for m in conversation]
        instruction = input.get("instruction")
        if not isinstance(instruction, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (URIAL): the row needs an 'instruction' text or a "
                f"'conversation' list; it has {sorted(input)}."
            )
        return [{"role": "user", "content": instruction}]

    def prompt(self, input: dict[str, Any]) -> str:
        """The plain-text URIAL prompt for one row."""
        return self.render_prompt("", "urial", messages=self._conversation(input)) + "\n"

    def format_input(self, input: dict[str, Any]) -> ChatType:
        return [{"role": "user", "content": self.prompt(input)}]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        text = output
        for stop in (_FENCE, "\n# User:", "\n# Assistant:"):
            text = text.split(stop, 1)[0]
        text = text.strip()
        if not text:
            raise ReplyParseError(f"the answer is empty: {preview(output)!r}")
        return {"generation": text}

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        if not getattr(self.llm, "supports_raw_completion", False):
            yield from super().process(inputs)
            return
        rows = list(inputs)
        prompts = [self.prompt(row) for row in rows]
        outputs: list[GenerateOutput] = self.llm.complete(
            prompts, num_generations=self.num_generations or 1
        )
        formatted: list[Any] = [[{"role": "user", "content": p}] for p in prompts]
        yield self.build_rows(rows, formatted, outputs)


__all__ = ["URIAL"]
