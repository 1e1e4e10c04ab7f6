"""Text classification with an LLM: one label, or several, from a fixed set.

Zero-shot classification by prompting (Brown et al., 2020, "Language Models are Few-Shot
Learners", https://arxiv.org/abs/2005.14165), as used to label synthetic data in Wang et al.,
2023, "Improving Text Embeddings with Large Language Models"
(https://arxiv.org/abs/2401.00368). The model is asked for JSON; when the LLM supports
structured output the answer is also constrained to a JSON schema whose label enum is the
label set, so it cannot invent labels.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, PositiveInt, field_validator, model_validator
from typing_extensions import Self

from alambic.errors import ColumnTypeError
from alambic.llms.typing import FormattedInput
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, extract_json_object, preview
from alambic.steps.tasks._templates import (
    check_template,
    render_source,
    render_user_template,
    template_source,
)
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

TEXT_CLASSIFICATION_TEMPLATE: str = template_source("text_classification", "user")
"""The user message of :class:`TextClassification` (alambic's wording), under distilabel's
name and with distilabel's variables: ``text``, ``query_title``, ``context``,
``labels_message``, ``available_labels`` (the label list as text, ``""`` when open),
``examples`` (as text, ``""`` when none), ``default_label`` and ``labels_format`` (the JSON
shape asked for). alambic also gives ``n`` and ``labels`` (``(label, description)`` pairs).
``load()`` puts it in the task's ``_template``, as distilabel's does, so replacing it before
``load()`` (or, for a task not loaded yet, before ``format_input``) changes the prompt; a
template a subclass assigns to ``_template`` in ``load()`` wins."""


class TextClassification(LenientFormatOutput, Task):
    """Label the ``text`` column with ``available_labels``.

    ``available_labels`` is a list of labels, or a dict of label -> description (descriptions
    are shown to the model). With ``n`` = 1 the output column ``labels`` holds one label (a
    ``str``); with ``n`` > 1 (multi-label) it holds a list of up to ``n`` distinct labels.
    ``default_label`` is what the model should answer when nothing fits; it is accepted as a
    label. With ``n`` > 1 it may be a list of up to ``n`` labels (as in distilabel): the prompt
    names them all, and each is accepted in a reply.

    The reply is read as JSON ``{"labels": [...]}`` (fences and prose around it are fine; a
    bare ``"label"`` key or a string value is accepted); when there is no JSON, labels named
    in the text are used. Labels outside the set are dropped; a reply with no known label is a
    failed row.

    With ``use_structured_output`` (default) ``format_input`` returns ``(messages, {"schema":
    ...})``: backends that constrain decoding natively do so, the others get the schema in the
    prompt and their replies validated (see ``alambic.llms.structured``).
    """

    available_labels: list[str] | dict[str, str] | None = Field(
        default=None,
        description="The labels, or label -> description; None: the model names the label.",
    )
    n: PositiveInt = Field(default=1, description="Most labels per text (1: single-label).")
    context: str = Field(default="", description="What the texts are, shown to the model.")
    query_title: str = Field(default="Text", description="What a text is called in the prompt.")
    default_label: str | list[str] = Field(
        default="Unclassified",
        description="The label when none fits (n > 1: may be a list of up to n labels).",
    )
    use_structured_output: bool = Field(
        default=True, description="Send the JSON schema with the request."
    )
    system_prompt: str | None = Field(default=None, description="Optional system message.")
    examples: list[str] | None = Field(
        default=None, description="Example texts (few-shot) shown to the model."
    )

    @field_validator("available_labels")
    @classmethod
    def _labels_not_empty(
        cls, value: list[str] | dict[str, str] | None
    ) -> list[str] | dict[str, str] | None:
        if value is not None and not value:
            raise ValueError("available_labels must hold at least one label")
        return value

    @model_validator(mode="after")
    def _default_label_fits_n(self) -> Self:
        check_default_label(self.default_label, self.n, owner=type(self).__name__)
        return self

    @property
    def inputs(self) -> StepColumns:
        return ["text"]

    @property
    def outputs(self) -> StepColumns:
        return ["labels", "model_name"]

    @property
    def label_set(self) -> list[str]:
        """The labels the model may answer, ``default_label`` last; ``[]`` when open."""
        if self.available_labels is None:
            return []
        labels = list(self.available_labels)
        return labels + [d for d in default_labels(self.default_label) if d not in labels]

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of a valid reply."""
        return {
            "type": "object",
            "properties": {
                "labels": {
                    "type": "array",
                    "items": {"type": "string", "enum": self.label_set}
                    if self.label_set
                    else {"type": "string"},
                    "minItems": 1,
                    "maxItems": self.n,
                }
            },
            "required": ["labels"],
            "additionalProperties": False,
        }

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        text = input.get("text")
        if not isinstance(text, str):
            raise ColumnTypeError(
                f"Step {self.name!r} (TextClassification): column 'text' must hold text, got "
                f"{type(text).__name__}."
            )
        prompt = self._render(self.prompt_values(text))
        messages: list[Any] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        if self.use_structured_output:
            return messages, {"schema": self.json_schema()}
        return messages

    def load(self) -> None:
        super().load()
        if self._template is None:
            owner = f"Step {self.name!r} ({type(self).__name__})"
            self._template = check_template(TEXT_CLASSIFICATION_TEMPLATE, owner=owner)

    def _render(self, values: dict[str, Any]) -> str:
        """``_template`` when set (by ``load()`` or a subclass), else the module constant."""
        owner = f"Step {self.name!r} ({type(self).__name__})"
        if self._template is None:
            return render_source(TEXT_CLASSIFICATION_TEMPLATE, owner=owner, **values)
        return render_user_template(self._template, values, owner=owner)

    def prompt_values(self, text: str) -> dict[str, Any]:
        """The template's variables for ``text`` (distilabel's names, plus ``n`` and
        ``labels``)."""
        return classification_values(
            text=text,
            n=self.n,
            labels=self.available_labels,
            context=self.context,
            examples=self.examples,
            default_label=self.default_label,
            query_title=self.query_title,
        )

    def empty_output(self, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """``format_output`` for no usable reply: ``None``, or with ``n`` > 1 ``n`` ``None``
        labels (distilabel's shapes; a failed row in a pipeline holds ``None``)."""
        return {"labels": None if self.n == 1 else [None] * self.n}

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        known = {label.casefold(): label for label in self.label_set}
        try:
            data = extract_json_object(output)
        except ReplyParseError:
            data = None
        if data is not None:
            raw = data.get("labels", data.get("label"))
            if isinstance(raw, str):
                raw = [raw]
            if not isinstance(raw, list):
                raise ReplyParseError(
                    f"the reply's JSON has no 'labels' list (keys: {sorted(data)}): "
                    f"{preview(output)!r}"
                )
            candidates = [str(item).strip() for item in raw]
        else:
            candidates = (
                _labels_mentioned(output, self.label_set)
                if self.label_set
                else [_open_label(output)]
            )
        chosen: list[str] = []
        for candidate in candidates:
            label = known.get(candidate.casefold()) if known else (candidate or None)
            if label is not None and label not in chosen:
                chosen.append(label)
        if not chosen:
            raise ReplyParseError(
                f"the reply names none of the labels {self.label_set}"
                + (f" (it answered {candidates})" if candidates else "")
                + f": {preview(output)!r}"
            )
        chosen = chosen[: self.n]
        return {"labels": chosen[0] if self.n == 1 else chosen}


def classification_values(
    *,
    text: str,
    n: int,
    labels: list[str] | dict[str, str] | None,
    context: str,
    examples: list[str] | None,
    default_label: str | list[str],
    query_title: str,
) -> dict[str, Any]:
    """The variables of a classification prompt, under distilabel's names (alambic's wording
    for the texts they hold); ``context`` and ``examples`` start with a newline when given,
    as distilabel's do, so templates written for distilabel lay out the same way."""
    described = (
        list(labels.items())
        if isinstance(labels, dict)
        else [(label, "") for label in labels or []]
    )
    if described:
        message = (
            "Choose the one label that fits it best from the list below."
            if n == 1
            else f"Choose up to {n} labels that fit it from the list below."
        )
        listed = "\n".join(f"- {label}: {d}" if d else f"- {label}" for label, d in described)
        available = f"Labels:\n{listed}"
    else:
        message = (
            "Name the one category it belongs to, as a short label of one to three words in "
            "lowercase."
            if n == 1
            else f"Name up to {n} categories it belongs to, each as a short label of one to "
            "three words in lowercase."
        )
        available = ""
    shown = (
        "\nExamples of what the texts look like:\n" + "\n".join(f"- {e}" for e in examples)
        if examples
        else ""
    )
    return {
        "text": text,
        "query_title": query_title,
        "context": f"\n{context}" if context else "",
        "labels_message": message,
        "available_labels": available,
        "examples": shown,
        "default_label": default_label,
        "labels_format": '["<label>"]' if n == 1 else '["<label>", ...]',
        "n": n,
        "labels": described,
    }


def default_labels(default_label: str | list[str]) -> list[str]:
    """``default_label`` as a list (one label, or the labels of a list default)."""
    return [default_label] if isinstance(default_label, str) else list(default_label)


def check_default_label(default_label: str | list[str], n: int, *, owner: str) -> None:
    """Refuse a list ``default_label`` that is empty, holds a blank label, or holds more
    labels than a text may get (``n``)."""
    if isinstance(default_label, str):
        return
    if not default_label or any(not label.strip() for label in default_label):
        raise ValueError(
            f"{owner}: default_label {default_label!r} must hold at least one non-empty label "
            f"(or be one label as a string)."
        )
    if len(default_label) > n:
        raise ValueError(
            f"{owner}: default_label {default_label!r} has {len(default_label)} labels but "
            f"n={n} (a text gets at most n labels): give at most {n} default labels, or set "
            f"n={len(default_label)}."
        )


def _open_label(text: str) -> str:
    """An open classification's label from a reply without JSON: its first line, unquoted."""
    first = next((line for line in text.strip().splitlines() if line.strip()), "")
    first = re.sub(r"(?i)^\W*labels?\W*:\s*", "", first)
    return first.strip().strip("\"'`*.").strip()


def _labels_mentioned(text: str, labels: list[str]) -> list[str]:
    found: list[tuple[int, str]] = []
    for label in labels:
        match = re.search(rf"(?<![\w-]){re.escape(label)}(?![\w-])", text, re.IGNORECASE)
        if match is not None:
            found.append((match.start(), label))
    return [label for _, label in sorted(found)]


__all__ = ["TEXT_CLASSIFICATION_TEMPLATE", "TextClassification"]
