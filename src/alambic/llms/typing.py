"""Types of what LLMs take and return."""

from __future__ import annotations

from typing import Any, Literal

from typing_extensions import NotRequired, Required, TypedDict


class ChatItem(TypedDict, total=False):
    """One chat message, in the OpenAI chat-completions format."""

    role: Required[Literal["system", "user", "assistant", "tool", "developer"]]
    content: Required[str]
    name: str


ChatType = list[ChatItem]
"""A conversation: what ``Task.format_input`` returns and what an LLM takes."""


class TokenStatistics(TypedDict):
    """Token counts, one entry per generation."""

    input_tokens: list[int | None]
    output_tokens: list[int | None]
    cached_tokens: NotRequired[list[int | None]]
    """Of the input tokens, those the provider served from its prompt cache (billed lower);
    present only when the provider reported some."""


class GenerationError(TypedDict):
    """Why one generation failed, kept in the row's metadata: the same keys as
    :class:`alambic.errors.ErrorEntry` (build one with :func:`alambic.errors.error_entry`).
    Declared with ``typing_extensions`` so pydantic can validate it on Python < 3.12."""

    type: str
    kind: str
    message: str


class GenerateOutput(TypedDict):
    """What an LLM returns for one input: ``num_generations`` texts and their statistics.

    A generation that failed is ``None`` in ``generations`` and has its reason at the same
    index of ``errors``.
    """

    generations: list[str | None]
    statistics: TokenStatistics
    errors: NotRequired[list[GenerationError | None]]
    reasonings: NotRequired[list[str | None]]
    """The reasoning (thinking) the backend returned apart from each generation, if any."""
    latency_s: NotRequired[float]
    """Seconds from sending the request to its reply (API clients; not for cached answers)."""
    retries: NotRequired[int]
    """Failed attempts before the reply (API clients; only when there were some)."""


StructuredOutputSpec = dict[str, Any]
"""A JSON schema, or ``{"schema": <json schema or pydantic model>, "format": "json"}``."""

FormattedInput = ChatType | tuple[ChatType, StructuredOutputSpec]
"""A conversation, optionally paired with the structured-output schema its reply must match."""

__all__ = [
    "ChatItem",
    "ChatType",
    "FormattedInput",
    "GenerateOutput",
    "GenerationError",
    "StructuredOutputSpec",
    "TokenStatistics",
]
