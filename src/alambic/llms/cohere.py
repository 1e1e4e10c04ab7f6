"""Cohere's v2 Chat API through the official ``cohere`` SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from alambic.llms.base import split_input
from alambic.llms.provider import ProviderLLM, drop_none, json_schema_of
from alambic.llms.typing import FormattedInput, GenerateOutput

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {"max_new_tokens": "max_tokens", "top_p": "p", "top_k": "k", "stop": "stop_sequences"}


class CohereLLM(ProviderLLM):
    """Command models through Cohere's v2 Chat API.

    The key comes from ``api_key``, ``COHERE_API_KEY`` or ``CO_API_KEY`` (the SDK's own
    variable). ``max_new_tokens``, ``top_p``, ``top_k`` and ``stop`` are renamed to Cohere's
    ``max_tokens``, ``p``, ``k`` and ``stop_sequences``. One reply per request; structured
    output uses ``response_format={"type": "json_object", "json_schema": ...}``.
    """

    sdk_module: ClassVar[str] = "cohere"
    extra_name: ClassVar[str] = "cohere"
    api_key_env_var: ClassVar[str | None] = "COHERE_API_KEY"
    api_key_env_aliases: ClassVar[tuple[str, ...]] = ("CO_API_KEY",)
    base_url_env_var: ClassVar[str | None] = "CO_API_URL"
    supports_n: ClassVar[bool] = False

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def _make_client(self) -> Any:
        kwargs = drop_none({"base_url": self.resolved_base_url()})
        return self.sdk().AsyncClientV2(
            api_key=self.resolved_api_key(), timeout=self.timeout, max_retries=0, **kwargs
        )

    def request_kwargs(
        self, input: FormattedInput, generation_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``chat`` arguments for one conversation."""
        messages, schema = split_input(input)
        kwargs = {_RENAMED.get(k, k): v for k, v in generation_kwargs.items()}
        if isinstance(kwargs.get("stop_sequences"), str):
            kwargs["stop_sequences"] = [kwargs["stop_sequences"]]
        if schema is not None:
            kwargs["response_format"] = {
                "type": "json_object",
                "json_schema": json_schema_of(schema),
            }
        turns = [
            {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
            for m in messages
        ]
        return drop_none({"model": self.model, "messages": turns, **kwargs})

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        response = await self._client().chat(**self.request_kwargs(input, generation_kwargs))
        parts = response.message.content or []
        text = "".join(getattr(p, "text", "") or "" for p in parts)
        usage = response.usage
        tokens = (
            (getattr(usage, "tokens", None) or getattr(usage, "billed_units", None))
            if usage
            else None
        )
        input_tokens = getattr(tokens, "input_tokens", None)
        output_tokens = getattr(tokens, "output_tokens", None)
        return {
            "generations": [text],
            "statistics": {
                "input_tokens": [int(input_tokens) if input_tokens is not None else None],
                "output_tokens": [int(output_tokens) if output_tokens is not None else None],
            },
        }


__all__ = ["CohereLLM"]
