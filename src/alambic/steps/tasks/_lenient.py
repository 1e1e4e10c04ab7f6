"""``format_output`` that never raises, for the built-in tasks (distilabel's contract).

Called directly, a built-in task's ``format_output(reply, row)`` returns its output columns
with ``None`` values when the reply is ``None`` or cannot be parsed, as distilabel's tasks do,
so scripts that call it on stored replies keep working. Inside a pipeline the reason is not
lost: the Task base calls ``format_output_or_raise`` instead, which raises the parser's error,
and the base records it in ``alambic_metadata["error_<task name>"]``.

A built-in task implements ``parse_output`` (strict: raises ``ValueError`` and friends on a
reply it cannot read) and, where an empty answer has a shape (one ``None`` per scored item),
``empty_output``. A user's subclass that overrides ``format_output`` keeps full control: its
override is what the pipeline calls.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from alambic.llms.typing import ChatType, FormattedInput
from alambic.steps.tasks._parsing import ReplyParseError, extract_json_object

PARSE_ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError, IndexError)
"""What a parser raises for a reply it cannot read (``ReplyParseError`` is a ``ValueError``)."""


class LenientFormatOutput:
    """Mixin for built-in tasks: put it before ``Task`` / ``GeneratorTask`` in the bases."""

    def parse_output(self, output: str, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """The output columns read from ``output``; raises on a reply it cannot read."""
        raise NotImplementedError

    def empty_output(self, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """The output columns for no usable reply: ``None`` each (scorers: one per item)."""
        # the columns the Task base fills for a failed row, so both paths agree
        columns = getattr(self, "_output_columns", None)
        if callable(columns):
            return dict.fromkeys(columns())
        outputs = self.own_outputs()  # type: ignore[attr-defined]
        return dict.fromkeys(c for c in outputs if c != "model_name")

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The output columns, with ``None`` values for a ``None`` or unparsable reply."""
        if output is None:
            return self.empty_output(input)
        try:
            return self.parse_output(output, input)
        except PARSE_ERRORS:
            return self.empty_output(input)

    def format_output_or_raise(
        self, output: str, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What the pipeline calls: the parser's error propagates so its reason is recorded.

        A subclass that overrides ``format_output`` gets its override called instead.
        """
        if type(self).format_output is not LenientFormatOutput.format_output:
            result: dict[str, Any] = self.format_output(output, input)
            return result
        return self.parse_output(output, input)


def per_item_none(input: dict[str, Any] | None, column: str, outputs: list[str]) -> dict[str, Any]:
    """``{output: [None] * len(input[column])}`` for each of ``outputs`` (``None`` if unknown)."""
    items = (input or {}).get(column)
    if not isinstance(items, list):
        return dict.fromkeys(outputs)
    return {name: [None] * len(items) for name in outputs}


class DefaultStructuredOutput(BaseModel):
    """``use_default_structured_output``: ask for (and parse) the task's own JSON shape.

    With it set, ``format_input`` sends ``get_structured_output()`` (a JSON schema) with each
    request as ``{"format": "json", "schema": ...}``, so backends that constrain decoding
    return exactly that JSON, and ``parse_output`` reads the JSON first (falling back to the
    text format when a backend ignored the schema).
    """

    use_default_structured_output: bool = Field(
        default=False, description="Request and parse the task's default JSON schema."
    )

    def get_structured_output(self) -> dict[str, Any]:
        """The JSON schema of this task's answer."""
        raise NotImplementedError

    def with_structured_output(self, messages: ChatType) -> FormattedInput:
        if not self.use_default_structured_output:
            return messages
        return messages, {"format": "json", "schema": self.get_structured_output()}

    def structured_reply(self, output: str) -> dict[str, Any] | None:
        """The reply's JSON object when ``use_default_structured_output``, else ``None``."""
        if not self.use_default_structured_output:
            return None
        try:
            return extract_json_object(output)
        except ReplyParseError:
            return None


def fit_list(value: Any, n: int, kind: type | tuple[type, ...]) -> list[Any]:
    """``value`` as a list of ``n`` items of ``kind`` (others ``None``), padded or cut."""
    items = value if isinstance(value, list) else []
    fitted = [v if isinstance(v, kind) and not isinstance(v, bool) else None for v in items[:n]]
    return fitted + [None] * (n - len(fitted))


def array_schema(title: str, **columns: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema of an object whose ``columns`` are all required."""
    return {
        "title": title,
        "type": "object",
        "properties": columns,
        "required": list(columns),
    }


__all__ = [
    "PARSE_ERRORS",
    "DefaultStructuredOutput",
    "LenientFormatOutput",
    "array_schema",
    "fit_list",
    "per_item_none",
]
