"""Sentence pairs and triplets for training or evaluating embedding models.

The kind of data used to fine-tune sentence embedders with contrastive losses (Reimers and
Gurevych, 2019, Sentence-BERT, https://arxiv.org/abs/1908.10084; with LLM-written positives
and hard negatives as in Wang et al., 2023, "Improving Text Embeddings with Large Language
Models", https://arxiv.org/abs/2401.00368): for each anchor the LLM writes a positive (a
paraphrase, a related sentence, a query it answers, or an answer to it) and optionally a
negative, which can be made deliberately hard (lexically close, meaning different).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatType, FormattedInput
from alambic.steps.tasks._lenient import (
    DefaultStructuredOutput,
    LenientFormatOutput,
    array_schema,
)
from alambic.steps.tasks._parsing import ReplyParseError, parse_sections, preview
from alambic.steps.tasks._templates import render
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

SentencePairAction = Literal["paraphrase", "semantically-similar", "query", "answer"]

_POSITIVE: dict[str, str] = {
    "paraphrase": "a paraphrase of the anchor: the same meaning in different words.",
    "semantically-similar": "semantically similar to the anchor: about the same thing, "
    "without being a rewording of it.",
    "query": "a search query or question that the anchor would answer well.",
    "answer": "an answer to the anchor, which is a question or query.",
}
_NEGATIVE: dict[str, str] = {
    "paraphrase": "not a paraphrase of the anchor: it means something else.",
    "semantically-similar": "about something else than the anchor.",
    "query": "a search query or question that the anchor does not answer.",
    "answer": "not an answer to the anchor.",
}
_HARD = (
    " Make it a hard negative: it shares many words, the topic and the style of the anchor, "
    "so that only its meaning tells it apart."
)


class GenerateSentencePair(LenientFormatOutput, DefaultStructuredOutput, Task):
    """Write a ``positive`` (and with ``triplet``, a ``negative``) for each ``anchor``.

    ``action`` says what the positive is: ``"paraphrase"``, ``"semantically-similar"``,
    ``"query"`` (a query the anchor answers, for retrieval data) or ``"answer"`` (an answer
    to the anchor). ``hard_negative`` asks for negatives that look like the anchor but mean
    something else. ``context`` is background text shown to the model, for example what the
    corpus is about. The reply is read from ``## Positive`` / ``## Negative`` sections (bold or
    ``Label:`` forms are accepted too); a missing section is a failed row.
    """

    _template_file: ClassVar[tuple[str, str] | None] = ("", "generate-sentence-pair")

    action: SentencePairAction = Field(description="What the positive is to the anchor.")
    triplet: bool = Field(default=False, description="Also write a negative.")
    hard_negative: bool = Field(
        default=False, description="Make the negative close to the anchor (needs triplet)."
    )
    context: str = Field(default="", description="Background text for the model.")

    @property
    def inputs(self) -> StepColumns:
        return ["anchor"]

    @property
    def outputs(self) -> StepColumns:
        return (
            ["positive", "negative", "model_name"] if self.triplet else ["positive", "model_name"]
        )

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        anchor = input.get("anchor")
        if not isinstance(anchor, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (GenerateSentencePair): column 'anchor' must hold text, "
                f"got {type(anchor).__name__}."
            )
        negative = _NEGATIVE[self.action] + (_HARD if self.hard_negative else "")
        system = render(
            "sentence_pair",
            "system",
            triplet=self.triplet,
            positive_description=_POSITIVE[self.action],
            negative_description=negative,
            context=self.context,
        )
        messages: ChatType = [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": self.render_prompt("", "generate-sentence-pair", anchor=anchor),
            },
        ]
        return self.with_structured_output(messages)

    def get_structured_output(self) -> dict[str, Any]:
        """``{"positive": str}``, plus ``"negative"`` for a triplet."""
        text = {"type": "string"}
        if self.triplet:
            return array_schema("Schema", positive=text, negative=text)
        return array_schema("Schema", positive=text)

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        labels = ["positive", "negative"] if self.triplet else ["positive"]
        data = self.structured_reply(output)
        if data is not None and all(isinstance(data.get(label), str) for label in labels):
            return {label: data[label] for label in labels}
        sections = parse_sections(output, ["anchor", "positive", "negative"])
        missing = [label for label in labels if label not in sections]
        if missing:
            raise ReplyParseError(
                f"the reply has no {' or '.join(missing)} section (expected '## Positive'"
                + (" and '## Negative'" if self.triplet else "")
                + f"): {preview(output)!r}"
            )
        return {label: _clean(sections[label]) for label in labels}


def _clean(text: str) -> str:
    text = text.strip().strip("`").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


__all__ = ["GenerateSentencePair", "SentencePairAction"]
