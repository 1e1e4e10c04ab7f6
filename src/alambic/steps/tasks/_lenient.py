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

PARSE_ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError, IndexError)
"""What a parser raises for a reply it cannot read (``ReplyParseError`` is a ``ValueError``)."""


class LenientFormatOutput:
    """Mixin for built-in tasks: put it before ``Task`` / ``GeneratorTask`` in the bases."""

    def parse_output(self, output: str, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """The output columns read from ``output``; raises on a reply it cannot read."""
        raise NotImplementedError

    def empty_output(self, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """The output columns for no usable reply: ``None`` each (scorers: one per item)."""
        outputs = self.get_outputs()  # type: ignore[attr-defined]
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


__all__ = ["PARSE_ERRORS", "LenientFormatOutput", "per_item_none"]
