"""Ollama's native chat API through the official ``ollama`` SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from alambic.llms.base import split_input
from alambic.llms.provider import ProviderLLM, drop_none, json_schema_of
from alambic.llms.typing import FormattedInput, GenerateOutput

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {"max_new_tokens": "num_predict", "max_tokens": "num_predict"}


class OllamaLLM(ProviderLLM):
    """A model served by Ollama (``ollama serve``), through its native ``/api/chat``.

    ``base_url`` defaults to ``OLLAMA_HOST`` or ``http://localhost:11434``. No key is needed
    for a local server; ``api_key`` or ``OLLAMA_API_KEY`` is sent as a bearer token (Ollama's
    hosted models). Generation settings go into Ollama's ``options`` (``max_new_tokens``
    becomes ``num_predict``). Structured output uses ``format=<JSON schema>``. Ollama's
    OpenAI-compatible endpoint also works with :class:`~alambic.llms.OpenAILLM`.
    """

    keep_alive: str | None = None

    sdk_module: ClassVar[str] = "ollama"
    extra_name: ClassVar[str] = "ollama"
    api_key_env_var: ClassVar[str | None] = "OLLAMA_API_KEY"
    base_url_env_var: ClassVar[str | None] = "OLLAMA_HOST"
    default_base_url: ClassVar[str | None] = "http://localhost:11434"
    requires_api_key: ClassVar[bool] = False
    supports_n: ClassVar[bool] = False

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def _make_client(self) -> Any:
        key = self.resolved_api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else None
        return self.sdk().AsyncClient(
            host=self.resolved_base_url(), timeout=self.timeout, headers=headers
        )

    def request_kwargs(
        self, input: FormattedInput, generation_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``chat`` arguments for one conversation."""
        messages, schema = split_input(input)
        options = drop_none({_RENAMED.get(k, k): v for k, v in generation_kwargs.items()})
        if isinstance(options.get("stop"), str):
            options["stop"] = [options["stop"]]
        return drop_none(
            {
                "model": self.model,
                "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "options": options or None,
                "format": json_schema_of(schema) if schema is not None else None,
                "keep_alive": self.keep_alive,
                "stream": False,
            }
        )

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        response = await self._client().chat(**self.request_kwargs(input, generation_kwargs))
        return {
            "generations": [response.message.content or ""],
            "statistics": {
                "input_tokens": [response.prompt_eval_count],
                "output_tokens": [response.eval_count],
            },
        }


__all__ = ["OllamaLLM"]
