"""Embedding models: turn texts into vectors for retrieval, deduplication and diversity filters.

``Embeddings`` is the small base every backend implements (``model_name``, ``load``,
``unload``, ``encode``); backends are imported on first use so ``import alambic.embeddings``
stays cheap and a missing package only matters for the backend that needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alambic.embeddings.base import Embeddings

if TYPE_CHECKING:
    from alambic.embeddings.sentence_transformers import SentenceTransformerEmbeddings

_LAZY: dict[str, str] = {
    "SentenceTransformerEmbeddings": "alambic.embeddings.sentence_transformers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alambic.embeddings' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["Embeddings", "SentenceTransformerEmbeddings"]
