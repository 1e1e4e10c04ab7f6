"""Steps that choose which rows to keep: near-duplicate removal and data selection.

``EmbeddingDedup`` and ``MinHashDedup`` mark rows (a boolean ``keep_row_after_*`` column) so
that nothing is lost and the decision can be inspected; ``DeitaFiltering`` selects a budget of
rows and returns only those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alambic.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from alambic.steps.filtering.deita import DeitaFiltering
    from alambic.steps.filtering.embedding_dedup import EmbeddingDedup
    from alambic.steps.filtering.minhash import MinHashDedup

_LAZY: dict[str, str] = {
    "DeitaFiltering": "alambic.steps.filtering.deita",
    "EmbeddingDedup": "alambic.steps.filtering.embedding_dedup",
    "MinHashDedup": "alambic.steps.filtering.minhash",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


__all__ = ["DeitaFiltering", "EmbeddingDedup", "MinHashDedup"]
