"""Together AI: an OpenAI-compatible API, so only a base URL and a key variable."""

from __future__ import annotations

from typing import ClassVar

from alambic.llms.openai import OpenAILLM


class TogetherLLM(OpenAILLM):
    """Models served by Together AI; the key comes from ``api_key`` or ``TOGETHER_API_KEY``."""

    api_key_env_var: ClassVar[str] = "TOGETHER_API_KEY"
    base_url_env_var: ClassVar[str] = "TOGETHER_BASE_URL"
    default_base_url: ClassVar[str] = "https://api.together.xyz/v1"


__all__ = ["TogetherLLM"]
