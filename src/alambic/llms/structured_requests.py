"""What every LLM does with a structured-output request (mixed into ``LLM``): which schema
a reply must match, and whether to send it natively or inside the prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alambic.llms.structured import StructuredSpec, resolve_spec, with_instructions
from alambic.llms.typing import ChatType, FormattedInput

if TYPE_CHECKING:
    from pydantic import BaseModel


class StructuredRequests:
    """Mixed into :class:`~alambic.llms.base.LLM` (which holds ``structured_output``)."""

    if TYPE_CHECKING:
        structured_output: dict[str, Any] | type[BaseModel] | None
        _spec_cache: tuple[Any, StructuredSpec] | None

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        """Whether this backend enforces ``spec`` itself (override in providers).

        When it does, the provider receives ``(messages, spec.wire())``, that is
        ``(messages, {"name": str, "schema": <JSON schema>})``, and must constrain the reply
        (OpenAI ``response_format``, Anthropic tool use, guided decoding...). When it does
        not, the base writes the schema into the last user message and the provider sees plain
        messages. Replies are validated either way.
        """
        return False

    def structured_spec(self, input: FormattedInput) -> StructuredSpec | None:
        """The schema a reply to ``input`` must match: the row's own, else the LLM's."""
        if isinstance(input, tuple):
            return resolve_spec(input[1]) if input[1] is not None else self._llm_spec()
        if self.structured_output is None:
            return None
        return self._llm_spec()

    def _llm_spec(self) -> StructuredSpec | None:
        if self.structured_output is None:
            return None
        cached = self._spec_cache
        if cached is None or cached[0] is not self.structured_output:
            cached = (self.structured_output, resolve_spec(self.structured_output))
            self._spec_cache = cached
        return cached[1]

    def structured_request(
        self, messages: ChatType, spec: StructuredSpec, previous_error: str | None = None
    ) -> FormattedInput:
        """What to send for a structured request: native, or with the schema in the prompt.

        A re-ask (``previous_error`` set) always carries the schema and the rejection reason in
        the prompt too, which rescues servers that silently ignore a native schema.
        """
        native = self.supports_native_structured_output(spec)
        if native and previous_error is None:
            return (messages, spec.wire())
        prompted = with_instructions(messages, spec, previous_error)
        return (prompted, spec.wire()) if native else prompted


__all__ = ["StructuredRequests"]
