"""Groq through the official ``groq`` SDK."""

from __future__ import annotations

from typing import Any, ClassVar

from alambic.llms.base import split_input
from alambic.llms.provider import ProviderLLM, drop_none, openai_like_output
from alambic.llms.typing import FormattedInput, GenerateOutput

_RENAMED = {"max_new_tokens": "max_tokens"}


class GroqLLM(ProviderLLM):
    """Models served by Groq. The key comes from ``api_key`` or ``GROQ_API_KEY``.

    Groq speaks the OpenAI chat protocol but answers one choice per request, so several
    generations are several requests. Structured output goes through the prompt (the base
    writes the schema into the last user message and validates the reply).
    """

    sdk_module: ClassVar[str] = "groq"
    extra_name: ClassVar[str] = "groq"
    api_key_env_var: ClassVar[str | None] = "GROQ_API_KEY"
    base_url_env_var: ClassVar[str | None] = "GROQ_BASE_URL"
    supports_n: ClassVar[bool] = False

    def _make_client(self) -> Any:
        return self.sdk().AsyncGroq(
            api_key=self.resolved_api_key(),
            base_url=self.resolved_base_url(),
            max_retries=0,
            timeout=self.timeout,
        )

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        messages, _ = split_input(input)
        kwargs = drop_none({_RENAMED.get(k, k): v for k, v in generation_kwargs.items()})
        response = await self._client().chat.completions.create(
            model=self.model, messages=messages, **kwargs
        )
        return openai_like_output(response)


__all__ = ["GroqLLM"]
