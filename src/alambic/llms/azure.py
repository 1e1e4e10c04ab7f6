"""Azure OpenAI through the official ``openai`` SDK's ``AsyncAzureOpenAI`` client."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from alambic.errors import AlambicUserError
from alambic.llms.openai import OpenAILLM

if TYPE_CHECKING:
    pass


class AzureOpenAILLM(OpenAILLM):
    """An Azure OpenAI deployment: ``model`` is the deployment name.

    ``base_url`` is the resource endpoint (``https://<resource>.openai.azure.com``, or
    ``AZURE_OPENAI_ENDPOINT``), ``api_version`` the API version (or ``OPENAI_API_VERSION``),
    and the key comes from ``api_key`` or ``AZURE_OPENAI_API_KEY``. Requests go to
    ``/openai/deployments/{model}/chat/completions?api-version=...``; everything else
    (``n``, structured output, errors) behaves as :class:`~alambic.llms.OpenAILLM`.
    """

    api_version: str | None = Field(default=None, description="Default: OPENAI_API_VERSION.")

    api_key_env_var: ClassVar[str] = "AZURE_OPENAI_API_KEY"
    base_url_env_var: ClassVar[str] = "AZURE_OPENAI_ENDPOINT"
    default_base_url: ClassVar[str] = ""

    def resolved_api_version(self) -> str:
        version = self.api_version or os.environ.get("OPENAI_API_VERSION")
        if not version:
            raise AlambicUserError(
                f"AzureOpenAILLM(model={self.model!r}) has no API version: pass "
                "api_version='2024-10-21' (or the version your resource supports) or set "
                "OPENAI_API_VERSION."
            )
        return version

    def load(self) -> None:
        if not self.resolved_base_url():
            raise AlambicUserError(
                f"AzureOpenAILLM(model={self.model!r}) has no endpoint: pass "
                "base_url='https://<resource>.openai.azure.com' or set AZURE_OPENAI_ENDPOINT."
            )
        self.resolved_api_version()
        super().load()

    def _make_client(self) -> Any:
        openai = self.require_sdk()
        return openai.AsyncAzureOpenAI(
            api_key=self.resolved_api_key(),
            azure_endpoint=self.resolved_base_url(),
            api_version=self.resolved_api_version(),
            max_retries=0,
            timeout=self.timeout,
        )

    batch_endpoint: ClassVar[str] = "/chat/completions"

    def _make_batch_client(self) -> Any:
        return self._make_client().with_options(max_retries=2)

    def require_sdk(self) -> Any:
        from alambic.utils.imports import require

        return require("openai", feature=type(self).__name__, extra=self.extra_name)


__all__ = ["AzureOpenAILLM"]
