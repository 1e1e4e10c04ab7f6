"""Any of LiteLLM's providers through ``litellm.acompletion``."""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from alambic.errors import ErrorKind
from alambic.llms.base import split_input
from alambic.llms.provider import (
    ProviderLLM,
    classify_sdk_error,
    drop_none,
    openai_like_output,
    openai_response_format,
)
from alambic.llms.typing import FormattedInput, GenerateOutput

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {"max_new_tokens": "max_tokens"}


class LiteLLM(ProviderLLM):
    """A model addressed the LiteLLM way (``"anthropic/claude-..."``, ``"bedrock/..."``,
    ``"hosted_vllm/..."``), through ``litellm.acompletion``.

    LiteLLM reads each provider's key from that provider's usual variable, so ``api_key`` is
    optional and alambic checks none; ``base_url`` becomes ``api_base``. LiteLLM's own
    retries are off (alambic's scheduler retries). Importing ``litellm`` normally tries to
    download a price table: ``LITELLM_LOCAL_MODEL_COST_MAP=True`` is set unless you set it.
    """

    sdk_module: ClassVar[str] = "litellm"
    extra_name: ClassVar[str] = "litellm"
    requires_api_key: ClassVar[bool] = False

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def sdk(self) -> ModuleType:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        return super().sdk()

    def _make_client(self) -> Any:
        return self.sdk()

    async def aclose(self) -> None:
        self._clients.clear()

    def classify_error(self, error: BaseException) -> tuple[ErrorKind, float | None]:
        kind, retry_after = classify_sdk_error(error)
        headers = getattr(error, "litellm_response_headers", None)
        if retry_after is None and headers is not None:
            from alambic.llms.openai import retry_after_from_headers

            retry_after = retry_after_from_headers(headers)
        return kind, retry_after

    def request_kwargs(
        self, input: FormattedInput, num_generations: int, generation_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``acompletion`` arguments for one conversation."""
        messages, schema = split_input(input)
        kwargs = {_RENAMED.get(k, k): v for k, v in generation_kwargs.items()}
        if schema is not None:
            kwargs["response_format"] = openai_response_format(schema)
        return drop_none(
            {
                "model": self.model,
                "messages": messages,
                "api_base": self.resolved_base_url(),
                "api_key": self.resolved_api_key(),
                "n": num_generations if num_generations > 1 else None,
                "timeout": self.timeout,
                "num_retries": 0,
                **kwargs,
            }
        )

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        litellm = self._client()
        response = await litellm.acompletion(
            **self.request_kwargs(input, num_generations, generation_kwargs)
        )
        return openai_like_output(response)


__all__ = ["LiteLLM"]
