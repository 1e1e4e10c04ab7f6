"""``DBSCAN``: group projected embeddings into clusters of dense regions.

Ester, Kriegel, Sander and Xu, 1996, "A Density-Based Algorithm for Discovering Clusters in
Large Spatial Databases with Noise" (KDD-96), with scikit-learn's implementation.
"""

from __future__ import annotations

from pydantic import Field, PositiveFloat, PositiveInt

from alambic.steps.base import GlobalStep
from alambic.steps.clustering._common import import_optional, vectors
from alambic.steps.typing import StepColumns, StepInput, StepOutput


class DBSCAN(GlobalStep):
    """Write ``cluster_label`` (an int; ``-1`` for noise) from each row's ``projection``.

    A global step: clusters are found over every row at once. Points with at least
    ``min_samples`` neighbours within ``eps`` seed a cluster; points reachable from none are
    noise. Needs scikit-learn (``pip install "alambic[clustering]"``).
    """

    eps: PositiveFloat = Field(default=0.3, description="Neighbourhood radius.")
    min_samples: PositiveInt = Field(default=30, description="Neighbours of a core point.")
    metric: str = Field(default="euclidean", description="Distance between projections.")
    n_jobs: PositiveInt = Field(default=8, description="Parallel jobs for the neighbour search.")

    @property
    def inputs(self) -> StepColumns:
        return ["projection"]

    @property
    def outputs(self) -> StepColumns:
        return ["cluster_label"]

    def load(self) -> None:
        import_optional("sklearn.cluster", "scikit-learn", self.name, "DBSCAN")
        super().load()

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows = list(inputs)
        if not rows:
            yield []
            return
        data = vectors(rows, "projection", self.name, "DBSCAN")
        cluster = import_optional("sklearn.cluster", "scikit-learn", self.name, "DBSCAN")
        labels = cluster.DBSCAN(
            eps=self.eps, min_samples=self.min_samples, metric=self.metric, n_jobs=self.n_jobs
        ).fit_predict(data)
        yield [
            {**row, "cluster_label": int(label)} for row, label in zip(rows, labels, strict=True)
        ]


__all__ = ["DBSCAN"]
