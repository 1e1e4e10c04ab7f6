"""Sentence pairs and triplets for training or evaluating embedding models.

The kind of data used to fine-tune sentence embedders with contrastive losses (Reimers and
Gurevych, 2019, Sentence-BERT, https://arxiv.org/abs/1908.10084; with LLM-written positives
and hard negatives as in Wang et al., 2023, "Improving Text Embeddings with Large Language
Models", https://arxiv.org/abs/2401.00368): for each anchor the LLM writes a positive (a
paraphrase, a related sentence, a query it answers, or an answer to it) and optionally a
negative, which can be made deliberately hard (lexically close, meaning different).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field

from alambic.errors import ColumnTypeError, TemplateError
from alambic.llms.typing import ChatType, FormattedInput
from alambic.steps.tasks._lenient import (
    DefaultStructuredOutput,
    LenientFormatOutput,
    array_schema,
)
from alambic.steps.tasks._parsing import ReplyParseError, parse_sections, preview
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

SentencePairAction = Literal["paraphrase", "semantically-similar", "query", "answer"]
GenerationAction = SentencePairAction
"""distilabel's name for the ``action`` values."""

# The prompt pieces, under distilabel's names and in its ``str.format`` shape (alambic's
# wording). They are read at each ``format_input``, so reading them shows the text sent and
# replacing them (``sentence_pair.POSITIVE_SYSTEM_PROMPT = "..."``) changes the prompt.

GENERATION_ACTION_SENTENCES: dict[str, str] = {
    "paraphrase": "be a paraphrase of",
    "semantically-similar": "stay semantically similar to",
    "query": "be a search query that is answered by",
    "answer": "be an answer to",
}
"""``action`` -> the words that fill ``{action_sentence}`` ("... must <these> the anchor")."""

POSITIVE_SYSTEM_PROMPT: str = (
    "You write training data for sentence-embedding models.{context} For the anchor sentence "
    "you are given, write one positive sentence that must {action_sentence} the anchor. "
    "Answer with a line `## Positive` followed by that sentence, and nothing else."
)
"""The system prompt of a pair (``triplet=False``); placeholders ``{context}`` and
``{action_sentence}``."""

NEGATIVE_STYLE: dict[str, str] = {
    "negative": "may reuse words of the anchor but is about something unrelated to it",
    "hard-negative": "is a hard negative: it shares many words, the topic and the sentence "
    "structure of the anchor, yet means something different, so that only its meaning tells "
    "it apart from the positive",
}
"""What the negative is (``"hard-negative"`` with ``hard_negative=True``); fills
``{negative_style}``."""

POSITIVE_NEGATIVE_SYSTEM_PROMPT: str = (
    "You write training data for sentence-embedding models.{context} For the anchor sentence "
    "you are given, write a positive sentence that must {action_sentence} the anchor, and a "
    "negative sentence that {negative_style}. Answer with a line `## Positive` followed by "
    "the positive sentence, then a line `## Negative` followed by the negative one, and "
    "nothing else."
)
"""The system prompt of a triplet; placeholders ``{context}``, ``{action_sentence}`` and
``{negative_style}``."""

CONTEXT_INTRO: str = (
    " The message opens with background on where the anchor comes from: stay within it."
)
"""Fills ``{context}`` when the task has a ``context`` (the context itself is in the user
message, rendered by ``generate-sentence-pair.jinja2``); empty otherwise."""

POSITIVE_NEGATIVE_PAIR_REGEX: re.Pattern[str] = re.compile(
    r"\A\s*##[ \t]*Positive[ \t]*\n(?P<positive>(?:(?!^##).)+?)"
    r"(?:\s*^##[ \t]*Negative[ \t]*\n(?P<negative>(?:(?!^##).)+?))?\s*\Z",
    re.DOTALL | re.MULTILINE,
)
"""A reply in exactly the asked form: group 1 the positive, group 2 the negative (or
``None``). Tried first; replies in other dresses (``**Positive:**``, ``Positive:``) are read
by the lenient section parser."""


class GenerateSentencePair(LenientFormatOutput, DefaultStructuredOutput, Task):
    """Write a ``positive`` (and with ``triplet``, a ``negative``) for each ``anchor``.

    ``action`` says what the positive is: ``"paraphrase"``, ``"semantically-similar"``,
    ``"query"`` (a query the anchor answers, for retrieval data) or ``"answer"`` (an answer
    to the anchor). ``hard_negative`` asks for negatives that look like the anchor but mean
    something else. ``context`` is background text shown to the model, for example what the
    corpus is about. The reply is read from ``## Positive`` / ``## Negative`` sections (bold or
    ``Label:`` forms are accepted too); a missing section is a failed row.

    The system message is built from this module's constants, under distilabel's names
    (``POSITIVE_SYSTEM_PROMPT``, ``POSITIVE_NEGATIVE_SYSTEM_PROMPT``,
    ``GENERATION_ACTION_SENTENCES``, ``NEGATIVE_STYLE``, ``CONTEXT_INTRO``), read at each call;
    the user message renders ``generate-sentence-pair.jinja2`` (``anchor``, ``context``), or
    the task's ``_template`` when a subclass sets one in ``load()``.
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
        messages: ChatType = [
            {"role": "system", "content": self.system_prompt_text()},
            {
                "role": "user",
                "content": self.render_prompt(
                    "",
                    "generate-sentence-pair",
                    anchor=anchor,
                    context=self.context or None,
                ),
            },
        ]
        return self.with_structured_output(messages)

    def system_prompt_text(self) -> str:
        """The system message: ``POSITIVE_SYSTEM_PROMPT`` (or, for a triplet,
        ``POSITIVE_NEGATIVE_SYSTEM_PROMPT``) filled from ``GENERATION_ACTION_SENTENCES``,
        ``NEGATIVE_STYLE`` and ``CONTEXT_INTRO``, as they are at this call."""
        values = {
            "action_sentence": GENERATION_ACTION_SENTENCES[self.action],
            "context": CONTEXT_INTRO if self.context else "",
        }
        template = POSITIVE_SYSTEM_PROMPT
        if self.triplet:
            template = POSITIVE_NEGATIVE_SYSTEM_PROMPT
            values["negative_style"] = NEGATIVE_STYLE[
                "hard-negative" if self.hard_negative else "negative"
            ]
        try:
            return template.format(**values)
        except (KeyError, IndexError) as exc:
            raise TemplateError(
                f"Step {self.name!r} (GenerateSentencePair): the system prompt template uses "
                f"the placeholder {exc} it is not given; its placeholders are {sorted(values)} "
                "(write a literal brace as {{ or }})."
            ) from exc

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
        exact = POSITIVE_NEGATIVE_PAIR_REGEX.match(output)
        if exact is not None:
            found = dict(zip(["positive", "negative"], exact.groups(), strict=False))
            cleaned = {label: _clean(found.get(label) or "") for label in labels}
            if all(cleaned.values()):
                return cleaned
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


__all__ = [
    "CONTEXT_INTRO",
    "GENERATION_ACTION_SENTENCES",
    "NEGATIVE_STYLE",
    "POSITIVE_NEGATIVE_PAIR_REGEX",
    "POSITIVE_NEGATIVE_SYSTEM_PROMPT",
    "POSITIVE_SYSTEM_PROMPT",
    "GenerateSentencePair",
    "GenerationAction",
    "SentencePairAction",
]
