"""Hugging Face inference through the official ``huggingface_hub`` SDK: serverless
Inference Providers, dedicated Inference Endpoints, or any TGI-style server by URL."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr

from alambic.errors import AlambicUserError, MissingAPIKeyError
from alambic.llms.base import split_input
from alambic.llms.provider import (
    ProviderLLM,
    drop_none,
    openai_like_output,
    openai_response_format,
)
from alambic.llms.typing import FormattedInput, GenerateOutput

if TYPE_CHECKING:
    from alambic.llms.structured import StructuredSpec

_RENAMED = {"max_new_tokens": "max_tokens"}


class InferenceEndpointsLLM(ProviderLLM):
    """A chat model on Hugging Face inference, reached through one of:

    - ``model`` alone: a hub id, served by Inference Providers (``provider`` picks one,
      default ``"auto"``);
    - ``endpoint_name`` (and ``endpoint_namespace``): a dedicated Inference Endpoint, whose
      URL is looked up once at ``load()``;
    - ``base_url``: any server with TGI's ``/v1/chat/completions`` (TGI, vLLM serve...).

    With an endpoint or a URL, ``model`` (if given) is sent as the request's model name, for
    servers that check it.

    The token comes from ``api_key``, ``HF_TOKEN`` or the token saved by ``hf auth login``;
    a server on this machine needs none. Structured output uses ``response_format`` of type
    ``json_schema`` (TGI grammars). The SDK refuses every request while ``HF_HUB_OFFLINE=1``
    is set, even to 127.0.0.1, so ``load()`` says so up front.
    """

    model: str = Field(default="", description="Hub model id (serverless), or empty.")
    endpoint_name: str | None = None
    endpoint_namespace: str | None = None
    provider: str | None = Field(default=None, description="Inference provider; default auto.")

    sdk_module: ClassVar[str] = "huggingface_hub"
    extra_name: ClassVar[str] = "hf"
    api_key_env_var: ClassVar[str | None] = "HF_TOKEN"
    api_key_env_aliases: ClassVar[tuple[str, ...]] = ("HUGGING_FACE_HUB_TOKEN",)
    supports_n: ClassVar[bool] = False

    _endpoint_url: str | None = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        return self.model or self.endpoint_name or self.base_url or ""

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        return True

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        hub = self.sdk()
        token: str | None = hub.get_token()
        if token:
            return token
        if self.base_url:
            return None
        raise MissingAPIKeyError(
            f"InferenceEndpointsLLM({self.model_name!r}) has no Hugging Face token: set the "
            "HF_TOKEN environment variable, run `hf auth login`, or pass api_key=..."
        )

    def load(self) -> None:
        hub = self.sdk()
        if (self.endpoint_name and self.base_url) or not (
            self.model or self.endpoint_name or self.base_url
        ):
            raise AlambicUserError(
                "InferenceEndpointsLLM needs model (serverless), endpoint_name (a dedicated "
                "endpoint) or base_url (a server URL), and not both endpoint_name and base_url; "
                f"got model={self.model!r}, endpoint_name={self.endpoint_name!r}, "
                f"base_url={self.base_url!r}."
            )
        offline_env = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        constants = importlib.import_module("huggingface_hub.constants")
        if constants.is_offline_mode() or offline_env:
            raise AlambicUserError(
                "InferenceEndpointsLLM cannot send requests while HF_HUB_OFFLINE=1 is set "
                "(huggingface_hub blocks every request, even to this machine): unset it, or "
                "use OpenAILLM(base_url=...) for an OpenAI-compatible server."
            )
        token = self.resolved_api_key()
        if self.endpoint_name and self._endpoint_url is None:
            endpoint = hub.get_inference_endpoint(
                self.endpoint_name, namespace=self.endpoint_namespace, token=token
            )
            self._endpoint_url = endpoint.url
        super().load()

    def _make_client(self) -> Any:
        hub = self.sdk()
        token = self.resolved_api_key()
        url = self._endpoint_url or self.base_url
        if url:
            return hub.AsyncInferenceClient(base_url=url, token=token, timeout=self.timeout)
        return hub.AsyncInferenceClient(
            model=self.model, provider=self.provider, token=token, timeout=self.timeout
        )

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        messages, schema = split_input(input)
        kwargs = drop_none({_RENAMED.get(k, k): v for k, v in generation_kwargs.items()})
        if isinstance(kwargs.get("stop"), str):
            kwargs["stop"] = [kwargs["stop"]]
        if schema is not None:
            kwargs["response_format"] = openai_response_format(schema)
        if self.model:
            kwargs["model"] = self.model
        response = await self._client().chat_completion(messages=messages, **kwargs)
        return openai_like_output(response)


__all__ = ["InferenceEndpointsLLM"]
