"""Prompting *base* (pretrained, not instruction-tuned) models with a few-shot text format.

A base model has no chat template and was never taught to answer a user turn: given a chat
prompt it continues the text, often with junk. What it does well is continue a pattern, so a
``FewShotPromptFormat`` writes each conversation as plain text after a few worked examples::

    Question: What is the boiling point of water at sea level?
    Answer: 100 degrees Celsius.

    Question: {the user's last message}
    Answer:

and the reply is cut where the model starts the next example (``stop``). Pass it to a local
engine that continues raw text, e.g. ``TransformersLLM(model=..., prompt_format=FewShotPromptFormat())``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "What is the boiling point of water at sea level?",
        "Water boils at 100 degrees Celsius (212 degrees Fahrenheit) at sea level.",
    ),
    (
        "Name two ways to keep a houseplant healthy.",
        "Water it only when the soil is dry, and give it plenty of indirect light.",
    ),
)
"""Two short question/answer pairs: enough for a base model to pick up the pattern."""


class FewShotPromptFormat(BaseModel):
    """How to write a conversation as a plain-text few-shot prompt for a base model.

    ``examples`` are (question, answer) pairs written before the real question; a system
    message, if the conversation has one, becomes the first line (``header`` otherwise).
    Earlier turns of a multi-turn conversation are written as further question/answer pairs.
    ``stop`` holds the strings that end a reply: a blank line, or the model starting the next
    question on its own.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    examples: list[tuple[str, str]] = Field(default_factory=lambda: list(DEFAULT_EXAMPLES))
    header: str = ""
    question_prefix: str = "Question: "
    answer_prefix: str = "Answer:"
    separator: str = "\n\n"
    stop: list[str] = Field(default_factory=lambda: ["\n\n", "\nQuestion:"])
    add_bos: bool = True
    """Start the prompt with the tokenizer's BOS token, as the model saw in pretraining."""

    def render(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The prompt for ``messages`` (OpenAI-style ``role``/``content`` dicts), ending with
        the answer prefix so that the model writes the answer next."""
        header = self.header
        pairs: list[tuple[str, str | None]] = []
        question: str | None = None
        for message in messages:
            role, content = message.get("role"), str(message.get("content") or "")
            if role == "system":
                header = content
            elif role == "user":
                if question is not None:
                    pairs.append((question, None))
                question = content
            elif role == "assistant" and question is not None:
                pairs.append((question, content))
                question = None
        parts = [header.strip()] if header.strip() else []
        for q, a in [*self.examples, *pairs]:
            answer = f" {a.strip()}" if a else ""
            parts.append(f"{self.question_prefix}{q.strip()}\n{self.answer_prefix}{answer}")
        parts.append(f"{self.question_prefix}{(question or '').strip()}\n{self.answer_prefix}")
        return self.separator.join(parts)

    def cut(self, text: str) -> str:
        """``text`` up to the first ``stop`` string, stripped."""
        for marker in self.stop:
            index = text.find(marker)
            if index >= 0:
                text = text[:index]
        return text.strip()


__all__ = ["DEFAULT_EXAMPLES", "FewShotPromptFormat"]
