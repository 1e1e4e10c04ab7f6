"""Steps that compute and search embeddings: ``EmbeddingGeneration``, ``FaissNearestNeighbour``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alambic.steps.embeddings.embedding_generation import EmbeddingGeneration
    from alambic.steps.embeddings.nearest_neighbour import FaissNearestNeighbour

_LAZY: dict[str, str] = {
    "EmbeddingGeneration": "alambic.steps.embeddings.embedding_generation",
    "FaissNearestNeighbour": "alambic.steps.embeddings.nearest_neighbour",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alambic.steps.embeddings' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["EmbeddingGeneration", "FaissNearestNeighbour"]
