"""Rows for supervised fine-tuning: ``prompt``, ``prompt_id`` and the chat ``messages``."""

from __future__ import annotations

from typing import Any, ClassVar

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatType
from alambic.steps.base import Step
from alambic.steps.formatting._common import chat_conversation, prompt_id, text_conversation
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput


class _FormatSFT(Step):
    _runs_inline: ClassVar[bool] = True

    @property
    def outputs(self) -> StepColumns:
        return ["prompt", "prompt_id", "messages"]

    def _conversation(self, row: Row) -> tuple[str, ChatType]:
        raise NotImplementedError

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows: list[Row] = []
        for row in inputs:
            prompt, conversation = self._conversation(row)
            generation: Any = row.get("generation")
            if generation is not None and not isinstance(generation, str):
                raise ColumnTypeError(
                    f"Step {self.name!r}: column 'generation' must hold text or None, got "
                    f"{type(generation).__name__} {generation!r:.80}. With grouped generations "
                    "(a list), use a DPO formatter or ungroup them first."
                )
            messages: ChatType | None = None
            if generation is not None:
                messages = [*conversation, {"role": "assistant", "content": generation}]
            rows.append(
                {**row, "prompt": prompt, "prompt_id": prompt_id(prompt), "messages": messages}
            )
        yield rows


class FormatTextGenerationSFT(_FormatSFT):
    """``instruction`` + ``generation`` -> ``prompt``, ``prompt_id``, ``messages``.

    ``messages`` is the conversation to train on: an optional ``system_prompt`` column, the
    instruction as the user turn and the generation as the assistant turn, the format TRL's
    ``SFTTrainer`` reads. ``prompt`` is the instruction and ``prompt_id`` its SHA-256. A row
    whose ``generation`` is ``None`` (a failed generation) keeps ``messages=None``; filter those
    rows out before training.
    """

    @property
    def inputs(self) -> StepColumns:
        return {"instruction": True, "generation": True, "system_prompt": False}

    def _conversation(self, row: Row) -> tuple[str, ChatType]:
        return text_conversation(self.step_name, row)


class FormatChatGenerationSFT(_FormatSFT):
    """``messages`` (ending with a user turn) + ``generation`` -> ``prompt``, ``prompt_id``,
    ``messages`` (with the generation appended as the assistant turn).

    ``prompt`` is the last user message and ``prompt_id`` its SHA-256; a ``None`` generation
    gives ``messages=None``.
    """

    @property
    def inputs(self) -> StepColumns:
        return ["messages", "generation"]

    def _conversation(self, row: Row) -> tuple[str, ChatType]:
        return chat_conversation(self.step_name, row)


__all__ = ["FormatChatGenerationSFT", "FormatTextGenerationSFT"]
