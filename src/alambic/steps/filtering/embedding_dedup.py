"""``EmbeddingDedup``: mark rows that are near-duplicates of an earlier row, by embedding."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from alambic.errors import ColumnTypeError
from alambic.runtime_parameters import RuntimeParameter
from alambic.steps.base import GlobalStep
from alambic.steps.typing import StepColumns, StepInput, StepOutput


class EmbeddingDedup(GlobalStep):
    """Semantic deduplication over the neighbours found by ``FaissNearestNeighbour``.

    In the spirit of SemDeDup (Abbas et al., 2023, "SemDeDup: Data-efficient learning at
    web-scale through semantic deduplication"): two rows whose embeddings are closer than
    ``threshold`` say the same thing, and only the first is worth keeping.

    Rows are visited in order; a row gets ``keep_row_after_embedding_filtering=False`` when one
    of its ``nn_indices`` is an *earlier row that was kept* and the matching ``nn_scores``
    passes the threshold (``score >= threshold`` for ``metric="inner_product"``, i.e. cosine
    similarity on unit vectors; ``score <= threshold`` for ``metric="l2"``). So the first
    occurrence always survives, and every dropped row has a kept near-duplicate: a chain
    A~B~C where C is far from A keeps A and C. Only the ``k`` neighbours found upstream are
    seen, so use ``k`` of a few (5-10) when duplicates come in clusters.

    Place it right after ``FaissNearestNeighbour``: ``nn_indices`` are positions in the rows
    that step received, so a step in between that drops or reorders rows breaks them. Rows
    without neighbours (no embedding) are kept. Rows are marked, not removed.
    """

    threshold: RuntimeParameter[float] = Field(
        default=0.9, description="Similarity (inner_product) or distance (l2) of a duplicate."
    )
    metric: Literal["inner_product", "l2"] = Field(
        default="inner_product", description="The metric FaissNearestNeighbour used."
    )

    @property
    def inputs(self) -> StepColumns:
        return ["nn_indices", "nn_scores"]

    @property
    def outputs(self) -> StepColumns:
        return ["keep_row_after_embedding_filtering"]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        threshold = 0.9 if self.threshold is None else self.threshold
        higher_is_closer = self.metric == "inner_product"
        kept: list[bool] = []
        for i, row in enumerate(inputs):
            indices: Any = row.get("nn_indices") or []
            scores: Any = row.get("nn_scores") or []
            if len(indices) != len(scores):
                raise ColumnTypeError(
                    f"Step {self.name!r} (EmbeddingDedup): row {i} has {len(indices)} "
                    f"nn_indices but {len(scores)} nn_scores; both come from "
                    "FaissNearestNeighbour and must have the same length."
                )
            duplicate = False
            for j, score in zip(indices, scores, strict=True):
                if not 0 <= j < len(inputs):
                    raise ColumnTypeError(
                        f"Step {self.name!r} (EmbeddingDedup): row {i} names neighbour {j}, "
                        f"but there are {len(inputs)} rows. nn_indices are positions in the "
                        "rows FaissNearestNeighbour saw: connect EmbeddingDedup right after it."
                    )
                close = score >= threshold if higher_is_closer else score <= threshold
                if j < i and kept[j] and close:
                    duplicate = True
                    break
            kept.append(not duplicate)
        yield [
            {**row, "keep_row_after_embedding_filtering": keep}
            for row, keep in zip(inputs, kept, strict=True)
        ]


__all__ = ["EmbeddingDedup"]
