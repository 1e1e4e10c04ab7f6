"""Mistral AI through the official ``mistralai`` SDK."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from alambic.llms.base import split_input
from alambic.llms.batch.llm import BatchAPILLM
from alambic.llms.provider import (
    drop_none,
    openai_like_output,
    openai_response_format,
)
from alambic.llms.typing import FormattedInput, GenerateOutput
from alambic.utils.imports import require

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {"max_new_tokens": "max_tokens", "seed": "random_seed"}


class MistralLLM(BatchAPILLM):
    """Mistral models through La Plateforme (or a server speaking its API).

    The key comes from ``api_key`` or ``MISTRAL_API_KEY``; ``base_url`` is the server root
    (default ``https://api.mistral.ai``). Several generations use ``n`` in one request;
    ``max_new_tokens`` and ``seed`` become ``max_tokens`` and ``random_seed``; structured
    output uses ``response_format`` of type ``json_schema``. ``use_batch_api=True`` sends
    requests as batch jobs (see docs/cost.md).
    """

    batch_max_requests: int = Field(
        default=100_000, gt=0, le=100_000, description="Most requests in one batch job."
    )

    sdk_module: ClassVar[str] = "mistralai.client"
    sdk_package: ClassVar[str | None] = "mistralai"
    extra_name: ClassVar[str] = "mistralai"
    api_key_env_var: ClassVar[str | None] = "MISTRAL_API_KEY"
    batch_max_bytes: ClassVar[int | None] = 500 * 2**20  # a batch file's limit: 512 MB

    def _new_batcher(self, journal: Any, limits: dict[str, Any]) -> Any:
        from alambic.llms.batch.mistral import MistralBatcher

        return MistralBatcher(self._make_client(), journal, model=self.model, **limits)

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def _make_client(self) -> Any:
        sdk = self.sdk()
        # mistralai 2.x/3.x: mistralai.client.Mistral; 1.x: mistralai.Mistral
        mistral = (
            getattr(sdk, "Mistral", None)
            or require("mistralai", feature="MistralLLM", extra="mistralai").Mistral
        )
        return mistral(
            api_key=self.resolved_api_key(),
            server_url=self.resolved_base_url(),
            timeout_ms=int((self.timeout or 120.0) * 1000),
        )

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        messages, schema = split_input(input)
        kwargs = drop_none({_RENAMED.get(k, k): v for k, v in generation_kwargs.items()})
        if schema is not None:
            kwargs["response_format"] = openai_response_format(schema)
        if num_generations > 1:
            kwargs["n"] = num_generations
        if self.use_batch_api:
            from alambic.llms.openai import parse_chat_completion

            body = {"model": self.model, "messages": messages, **kwargs}
            reply = await self._batcher().submit(body)
            return parse_chat_completion(json.dumps(reply).encode(), num_generations)
        response = await self._client().chat.complete_async(
            model=self.model, messages=messages, **kwargs
        )
        return openai_like_output(response)


__all__ = ["MistralLLM"]
