"""Every provider is reachable from ``alambic.llms`` without importing its SDK up front."""

from __future__ import annotations

import subprocess
import sys

import alambic.llms
from alambic.llms.base import LLM

PROVIDERS = [
    "AnthropicLLM",
    "AzureOpenAILLM",
    "CohereLLM",
    "GroqLLM",
    "InferenceEndpointsLLM",
    "LiteLLM",
    "LlamaCppLLM",
    "MistralLLM",
    "OllamaLLM",
    "OpenAILLM",
    "TogetherLLM",
    "TransformersLLM",
    "VertexAILLM",
    "vLLM",
]


def test_every_provider_is_exported_and_is_an_llm():
    for name in PROVIDERS:
        assert name in alambic.llms.__all__
        assert issubclass(getattr(alambic.llms, name), LLM)


def test_provider_classes_import_no_sdk():
    code = (
        "import sys, alambic.llms as l\n"
        f"[getattr(l, n) for n in {PROVIDERS!r}]\n"
        "sdks = ['anthropic', 'cohere', 'groq', 'ollama', 'mistralai', 'google.genai',\n"
        "        'huggingface_hub', 'torch', 'vllm', 'llama_cpp', 'litellm', 'transformers']\n"
        "print(sorted(m for m in sdks if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
