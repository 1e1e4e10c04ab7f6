"""``UMAP``: project embeddings to a few dimensions before clustering them.

McInnes, Healy and Melville, 2018, "UMAP: Uniform Manifold Approximation and Projection for
Dimension Reduction" (https://arxiv.org/abs/1802.03426), with the umap-learn library.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt

from alambic.steps.base import GlobalStep
from alambic.steps.clustering._common import import_optional, vectors
from alambic.steps.typing import StepColumns, StepInput, StepOutput


class UMAP(GlobalStep):
    """Write ``projection`` (``n_components`` floats) from each row's ``embedding``.

    A global step: the projection is fitted on every row at once. ``n_neighbors`` is capped
    at the number of rows minus one, so small datasets work. ``random_state`` makes the result
    reproducible (umap-learn then runs single-threaded). Needs umap-learn
    (``pip install "alambic[clustering]"``).
    """

    n_components: PositiveInt = Field(default=2, description="Dimensions of the projection.")
    n_neighbors: PositiveInt = Field(default=15, description="Size of the local neighbourhood.")
    metric: str = Field(default="euclidean", description="Distance between embeddings.")
    n_jobs: PositiveInt = Field(default=8, description="Threads umap-learn may use.")
    random_state: int | None = Field(default=None, description="Seed; None: not reproducible.")

    @property
    def inputs(self) -> StepColumns:
        return ["embedding"]

    @property
    def outputs(self) -> StepColumns:
        return ["projection"]

    def load(self) -> None:
        import_optional("umap", "umap-learn", self.name, "UMAP")
        super().load()

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows = list(inputs)
        if not rows:
            yield []
            return
        data = vectors(rows, "embedding", self.name, "UMAP")
        if len(rows) <= self.n_components + 1:
            raise ValueError(
                f"Step {self.name!r} (UMAP): {len(rows)} rows cannot be projected to "
                f"{self.n_components} dimensions; UMAP needs more than n_components + 1 rows."
            )
        umap = import_optional("umap", "umap-learn", self.name, "UMAP")
        reducer = umap.UMAP(
            n_components=self.n_components,
            n_neighbors=min(self.n_neighbors, len(rows) - 1),
            metric=self.metric,
            n_jobs=1 if self.random_state is not None else self.n_jobs,
            random_state=self.random_state,
        )
        projected = reducer.fit_transform(data)
        yield [
            {**row, "projection": [float(x) for x in point]}
            for row, point in zip(rows, projected, strict=True)
        ]


__all__ = ["UMAP"]
