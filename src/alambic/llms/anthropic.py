"""Anthropic's Messages API through the official ``anthropic`` SDK."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from alambic.llms._content import to_anthropic_content, with_reasonings
from alambic.llms.base import split_input
from alambic.llms.batch.llm import BatchAPILLM
from alambic.llms.provider import drop_none, json_schema_of, split_known_kwargs
from alambic.llms.typing import ChatType, FormattedInput, GenerateOutput

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {"max_new_tokens": "max_tokens", "stop": "stop_sequences"}
_TOOL_NAME = "structured_output"


def to_anthropic_messages(messages: ChatType) -> tuple[str | None, list[dict[str, Any]]]:
    """Split OpenAI-style messages into Anthropic's ``system`` text and ``messages`` list.

    System (and developer) messages become the ``system`` parameter, joined by blank lines,
    because the Messages API only takes ``user`` and ``assistant`` turns.
    """
    system = [m["content"] for m in messages if m["role"] in ("system", "developer")]
    turns = [
        {"role": m["role"], "content": to_anthropic_content(m["content"])}
        for m in messages
        if m["role"] in ("user", "assistant")
    ]
    return ("\n\n".join(system) if system else None), turns


class AnthropicLLM(BatchAPILLM):
    """Claude models through the Messages API (or any server speaking it, such as the
    LiteLLM proxy).

    The key comes from ``api_key`` or ``ANTHROPIC_API_KEY``. ``max_tokens`` is required by
    the API: it defaults to ``max_tokens`` below unless ``max_new_tokens`` is given. The API
    returns one reply per request, so several generations are several requests. Structured
    output uses tool use: the schema becomes a tool the model is made to call, and the
    tool's arguments are the reply text (a JSON document).

    ``use_batch_api=True`` sends requests as Message Batches (see docs/cost.md).
    """

    max_tokens: int = 1024
    batch_max_requests: int = Field(
        default=100_000, gt=0, le=100_000, description="Most requests in one Message Batch."
    )

    sdk_module: ClassVar[str] = "anthropic"
    extra_name: ClassVar[str] = "anthropic"
    api_key_env_var: ClassVar[str | None] = "ANTHROPIC_API_KEY"
    base_url_env_var: ClassVar[str | None] = "ANTHROPIC_BASE_URL"
    supports_n: ClassVar[bool] = False
    batch_max_bytes: ClassVar[int | None] = 250 * 2**20  # a Message Batch's limit: 256 MB

    def _new_batcher(self, journal: Any, limits: dict[str, Any]) -> Any:
        from alambic.llms.batch.anthropic import AnthropicBatcher

        client = self.sdk().AsyncAnthropic(
            api_key=self.resolved_api_key(),
            base_url=self.resolved_base_url(),
            max_retries=2,
            timeout=self.timeout or 120.0,
        )
        return AnthropicBatcher(client, journal, **limits)

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def _make_client(self) -> Any:
        return self.sdk().AsyncAnthropic(
            api_key=self.resolved_api_key(),
            base_url=self.resolved_base_url(),
            max_retries=0,
            timeout=self.timeout,
        )

    def request_kwargs(
        self, input: FormattedInput, generation_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``messages.create`` arguments for one conversation."""
        messages, schema = split_input(input)
        system, turns = to_anthropic_messages(messages)
        kwargs = {_RENAMED.get(k, k): v for k, v in generation_kwargs.items()}
        if isinstance(kwargs.get("stop_sequences"), str):
            kwargs["stop_sequences"] = [kwargs["stop_sequences"]]
        kwargs.setdefault("max_tokens", self.max_tokens)
        if schema is not None:
            name = str(schema.get("name") or _TOOL_NAME)
            kwargs["tools"] = [
                {
                    "name": name,
                    "description": "Answer by calling this tool with arguments that match "
                    "its schema.",
                    "input_schema": json_schema_of(schema),
                }
            ]
            kwargs["tool_choice"] = {"type": "tool", "name": name}
        return drop_none({"model": self.model, "system": system, "messages": turns, **kwargs})

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        params = self.request_kwargs(input, generation_kwargs)
        if self.use_batch_api:
            return parse_message(await self._batcher().submit(params))
        create = self._client().messages.create
        known, extra = split_known_kwargs(create, params)
        return parse_message(await create(**known, **({"extra_body": extra} if extra else {})))


def parse_message(message: Any) -> GenerateOutput:
    """Reply text (or the forced tool call's arguments), reasoning and tokens of a Message."""
    texts: list[str] = []
    thinking: list[str] = []  # extended-thinking blocks: kept apart from the reply
    for block in message.content:
        if block.type == "tool_use":
            return _single(json.dumps(block.input), message.usage, thinking)
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "thinking":
            thinking.append(getattr(block, "thinking", "") or "")
    return _single("".join(texts), message.usage, thinking)


def _single(text: str, usage: Any, thinking: list[str] | None = None) -> GenerateOutput:
    out: GenerateOutput = {
        "generations": [text],
        "statistics": {
            "input_tokens": [getattr(usage, "input_tokens", None)],
            "output_tokens": [getattr(usage, "output_tokens", None)],
        },
    }
    reasoning = "\n\n".join(t for t in thinking or [] if t.strip()) or None
    return with_reasonings(out, [reasoning])


__all__ = ["AnthropicLLM", "parse_message", "to_anthropic_messages"]
