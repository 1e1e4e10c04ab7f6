"""LLM backends. Provider modules are imported on first use, so ``import alambic.llms`` is
cheap and a missing SDK only matters for the backend that needs it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alambic.llms.base import LLM, AsyncLLM
from alambic.llms.typing import ChatItem, ChatType, FormattedInput, GenerateOutput

if TYPE_CHECKING:
    from alambic.llms.fake import FakeLLM
    from alambic.llms.openai import OpenAILLM
    from alambic.llms.transformers import TransformersLLM

_LAZY: dict[str, str] = {
    "FakeLLM": "alambic.llms.fake",
    "OpenAILLM": "alambic.llms.openai",
    "TransformersLLM": "alambic.llms.transformers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alambic.llms' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "LLM",
    "AsyncLLM",
    "ChatItem",
    "ChatType",
    "FakeLLM",
    "FormattedInput",
    "GenerateOutput",
    "OpenAILLM",
    "TransformersLLM",
]
