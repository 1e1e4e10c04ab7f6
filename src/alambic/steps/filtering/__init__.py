"""Steps that choose which rows to keep: near-duplicate removal and data selection.

``EmbeddingDedup`` and ``MinHashDedup`` mark rows (a boolean ``keep_row_after_*`` column) so
that nothing is lost and the decision can be inspected; ``DeitaFiltering`` selects a budget of
rows and returns only those.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alambic.steps.filtering.deita import DeitaFiltering
    from alambic.steps.filtering.embedding_dedup import EmbeddingDedup
    from alambic.steps.filtering.minhash import MinHashDedup

_LAZY: dict[str, str] = {
    "DeitaFiltering": "alambic.steps.filtering.deita",
    "EmbeddingDedup": "alambic.steps.filtering.embedding_dedup",
    "MinHashDedup": "alambic.steps.filtering.minhash",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alambic.steps.filtering' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["DeitaFiltering", "EmbeddingDedup", "MinHashDedup"]
