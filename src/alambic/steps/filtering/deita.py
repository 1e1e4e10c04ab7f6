"""``DeitaFiltering``: choose a budget of high-scoring, mutually diverse rows (Deita)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field, PositiveInt, field_validator

from alambic.errors import ColumnTypeError
from alambic.runtime_parameters import RequiredRuntimeParameter, RuntimeParameter
from alambic.steps.base import GlobalStep
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput

logger = logging.getLogger("alambic")

COMPLEXITY_COLUMN = "evol_instruction_score"
QUALITY_COLUMN = "evol_response_score"


class DeitaFiltering(GlobalStep):
    """Score-first, diversity-aware data selection from Deita.

    Liu et al., 2023, "What Makes Good Data for Alignment? A Comprehensive Study of Automatic
    Data Selection in Instruction Tuning" (arXiv:2312.15685). Each row gets an EVOL score,
    the product of how complex its instruction is and how good its response is; rows are then
    visited from the best score down and one is taken only if it is far enough, in embedding
    space, from every row taken before it, until ``data_budget`` rows are chosen.

    Input columns:

    - ``evol_instruction_score``: the instruction's *complexity* score (e.g. from the
      complexity scorer task, mapped with ``input_mappings``), a number, or a list of numbers
      for a multi-turn conversation (one per turn).
    - ``evol_response_score``: the response's *quality* score (e.g. from the quality scorer
      task), a number or a list of the same length.
    - ``embedding``: the row's embedding (``EmbeddingGeneration``).

    ``ComplexityScorer`` / ``QualityScorer`` write ``scores``, one per candidate they ranked;
    expand the candidates to one row each and rename the column (``output_mappings``) first: a
    list reaching this step is read as per-turn scores, not as alternatives.

    ``deita_score`` is ``complexity * quality``; for lists, the sum over turns of
    ``complexity_t * quality_t`` as in the paper. When one of the two scores is missing
    (``None``, a failed judge) the other one alone is used, and ``deita_score_computed_with``
    lists the columns that went in. Rows with neither score, or no embedding, cannot be ranked
    and are never selected. Ties keep the earlier row first.

    Diversity: a row is taken only if its cosine distance (1 - cosine similarity) to its
    nearest already-taken row is greater than ``diversity_threshold``. The default 0.1 is the
    paper's setting (cosine similarity below 0.9). ``nearest_neighbor_distance`` holds that
    distance (``None`` for the first row taken). With ``normalize_embeddings=False`` the
    embeddings are used as given, which is only right when they already have unit norm.

    The output holds only the selected rows, best ``deita_score`` first; fewer than
    ``data_budget`` when not enough rows are diverse enough (a warning says so).
    """

    data_budget: RequiredRuntimeParameter[PositiveInt] = Field(
        default=None, description="How many rows to select."
    )
    diversity_threshold: RuntimeParameter[float] = Field(
        default=0.1,
        description="Minimum cosine distance to every selected row (0.1 = similarity < 0.9).",
    )
    normalize_embeddings: RuntimeParameter[bool] = Field(
        default=True, description="Scale embeddings to unit norm before comparing them."
    )

    @field_validator("diversity_threshold")
    @classmethod
    def _check_threshold(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 2.0:
            raise ValueError(
                f"diversity_threshold={value} is not a cosine distance: use a value in [0, 2] "
                "(0.1 keeps rows whose cosine similarity to every kept row is below 0.9)."
            )
        return value

    @property
    def inputs(self) -> StepColumns:
        return {COMPLEXITY_COLUMN: False, QUALITY_COLUMN: False, "embedding": True}

    @property
    def outputs(self) -> StepColumns:
        return ["deita_score", "deita_score_computed_with", "nearest_neighbor_distance"]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        import numpy as np

        if self.data_budget is None:
            raise ValueError(
                f"Step {self.name!r} (DeitaFiltering): data_budget is not set. Pass "
                "data_budget=<rows> or set it with run(parameters={...})."
            )
        threshold = 0.1 if self.diversity_threshold is None else self.diversity_threshold
        scored: list[tuple[float, int, list[str]]] = []
        for i, row in enumerate(inputs):
            score, used = self._score(i, row)
            if score is not None and row.get("embedding") is not None:
                scored.append((score, i, used))
        scored.sort(key=lambda item: (-item[0], item[1]))

        selected: list[Row] = []
        taken: Any = None  # the selected embeddings, one per row, preallocated to the budget
        for score, i, used in scored:
            if len(selected) >= self.data_budget:
                break
            vector = self._vector(i, inputs[i]["embedding"], taken)
            distance: float | None = None
            if taken is None:
                taken = np.empty((self.data_budget, vector.shape[0]), dtype="float64")
            else:
                distance = float(1.0 - np.max(taken[: len(selected)] @ vector))
                if distance <= threshold:
                    continue
            taken[len(selected)] = vector
            selected.append(
                {
                    **inputs[i],
                    "deita_score": score,
                    "deita_score_computed_with": used,
                    "nearest_neighbor_distance": distance,
                }
            )
        if len(selected) < self.data_budget:
            logger.warning(
                "Step %r (DeitaFiltering): selected %d rows of a data_budget of %d; %d rows "
                "could be ranked and the others were within diversity_threshold=%s of a "
                "selected row.",
                self.name,
                len(selected),
                self.data_budget,
                len(scored),
                threshold,
            )
        yield selected

    def _score(self, i: int, row: Row) -> tuple[float | None, list[str]]:
        complexity = _as_scores(row.get(COMPLEXITY_COLUMN), COMPLEXITY_COLUMN, i, self.name)
        quality = _as_scores(row.get(QUALITY_COLUMN), QUALITY_COLUMN, i, self.name)
        if complexity is not None and quality is not None:
            if len(complexity) != len(quality):
                raise ColumnTypeError(
                    f"Step {self.name!r} (DeitaFiltering): row {i} has {len(complexity)} "
                    f"{COMPLEXITY_COLUMN} values but {len(quality)} {QUALITY_COLUMN} values; "
                    "a multi-turn row needs one of each per turn."
                )
            total = sum(c * q for c, q in zip(complexity, quality, strict=True))
            return total, [COMPLEXITY_COLUMN, QUALITY_COLUMN]
        if complexity is not None:
            return sum(complexity), [COMPLEXITY_COLUMN]
        if quality is not None:
            return sum(quality), [QUALITY_COLUMN]
        return None, []

    def _vector(self, i: int, embedding: Any, taken: Any) -> Any:
        import numpy as np

        vector = np.asarray(embedding, dtype="float64")
        if vector.ndim != 1 or (taken is not None and vector.shape[0] != taken.shape[1]):
            raise ColumnTypeError(
                f"Step {self.name!r} (DeitaFiltering): row {i} has an 'embedding' of shape "
                f"{vector.shape}; every row needs a flat list of floats of the same length."
            )
        if self.normalize_embeddings:
            norm = float(np.linalg.norm(vector))
            if norm > 0:
                vector = vector / norm
        return vector


def _as_scores(value: Any, column: str, i: int, step: str | None) -> list[float] | None:
    """``None`` when the score is missing (or a list holds a ``None``), else a list of floats."""
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    if any(v is None for v in values) or not values:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ColumnTypeError(
            f"Step {step!r} (DeitaFiltering): row {i} column {column!r} holds {value!r:.100}; "
            "it must be a number or a list of numbers (one per turn)."
        )
    return [float(v) for v in values]


__all__ = ["DeitaFiltering"]
