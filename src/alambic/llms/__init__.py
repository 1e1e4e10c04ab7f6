"""LLM backends. Provider modules are imported on first use, so ``import alambic.llms`` is
cheap and a missing SDK only matters for the backend that needs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alambic.llms.base import LLM, AsyncLLM
from alambic.llms.typing import ChatItem, ChatType, FormattedInput, GenerateOutput
from alambic.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from alambic.llms.anthropic import AnthropicLLM
    from alambic.llms.azure import AzureOpenAILLM
    from alambic.llms.cohere import CohereLLM
    from alambic.llms.fake import FakeLLM
    from alambic.llms.groq import GroqLLM
    from alambic.llms.huggingface import InferenceEndpointsLLM
    from alambic.llms.litellm import LiteLLM
    from alambic.llms.llamacpp import LlamaCppLLM
    from alambic.llms.magpie import MagpieChatTemplateMixin
    from alambic.llms.mistral import MistralLLM
    from alambic.llms.ollama import OllamaLLM
    from alambic.llms.openai import OpenAILLM
    from alambic.llms.together import TogetherLLM
    from alambic.llms.transformers import TransformersLLM
    from alambic.llms.vertexai import VertexAILLM
    from alambic.llms.vllm import vLLM

_LAZY: dict[str, str] = {
    "AnthropicLLM": "alambic.llms.anthropic",
    "AzureOpenAILLM": "alambic.llms.azure",
    "CohereLLM": "alambic.llms.cohere",
    "FakeLLM": "alambic.llms.fake",
    "GroqLLM": "alambic.llms.groq",
    "InferenceEndpointsLLM": "alambic.llms.huggingface",
    "LiteLLM": "alambic.llms.litellm",
    "LlamaCppLLM": "alambic.llms.llamacpp",
    "MistralLLM": "alambic.llms.mistral",
    "OllamaLLM": "alambic.llms.ollama",
    "TogetherLLM": "alambic.llms.together",
    "VertexAILLM": "alambic.llms.vertexai",
    "vLLM": "alambic.llms.vllm",
    "OpenAILLM": "alambic.llms.openai",
    "TransformersLLM": "alambic.llms.transformers",
    "MagpieChatTemplateMixin": "alambic.llms.magpie",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = [
    "LLM",
    "AnthropicLLM",
    "AsyncLLM",
    "AzureOpenAILLM",
    "ChatItem",
    "ChatType",
    "CohereLLM",
    "FakeLLM",
    "FormattedInput",
    "GenerateOutput",
    "GroqLLM",
    "InferenceEndpointsLLM",
    "LiteLLM",
    "LlamaCppLLM",
    "MagpieChatTemplateMixin",
    "MistralLLM",
    "OllamaLLM",
    "OpenAILLM",
    "TogetherLLM",
    "TransformersLLM",
    "VertexAILLM",
    "vLLM",
]
