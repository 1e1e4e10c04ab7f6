"""Steps that compute and search embeddings: ``EmbeddingGeneration``, ``FaissNearestNeighbour``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alambic.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from alambic.steps.embeddings.embedding_generation import EmbeddingGeneration
    from alambic.steps.embeddings.nearest_neighbour import FaissNearestNeighbour

_LAZY: dict[str, str] = {
    "EmbeddingGeneration": "alambic.steps.embeddings.embedding_generation",
    "FaissNearestNeighbour": "alambic.steps.embeddings.nearest_neighbour",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = ["EmbeddingGeneration", "FaissNearestNeighbour"]
