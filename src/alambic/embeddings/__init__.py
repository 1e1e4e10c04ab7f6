"""Embedding models: turn texts into vectors for retrieval, deduplication and diversity filters.

``Embeddings`` is the small base every backend implements (``model_name``, ``load``,
``unload``, ``encode``); backends are imported on first use so ``import alambic.embeddings``
stays cheap and a missing package only matters for the backend that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alambic.embeddings.base import Embeddings
from alambic.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from alambic.embeddings.sentence_transformers import SentenceTransformerEmbeddings

_LAZY: dict[str, str] = {
    "SentenceTransformerEmbeddings": "alambic.embeddings.sentence_transformers",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = ["Embeddings", "SentenceTransformerEmbeddings"]
