"""``FaissNearestNeighbour``: the k nearest rows of every row, by embedding."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from alambic.errors import ColumnTypeError
from alambic.runtime_parameters import RuntimeParameter
from alambic.steps.base import GlobalStep
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput
from alambic.utils.imports import require


class FaissNearestNeighbour(GlobalStep):
    """Find each row's ``k`` nearest neighbours among all rows, with a faiss index.

    Faiss (Johnson, Douze & Jégou, 2017, "Billion-scale similarity search with GPUs") builds
    the index over the ``embedding`` column of every row; each row then gets:

    - ``nn_indices``: the positions (0-based, in the order this step receives the rows) of its
      ``k`` nearest other rows, nearest first. A row is never its own neighbour, so an exact
      duplicate shows up as the other row with the best possible score.
    - ``nn_scores``: the matching scores. With ``metric="inner_product"`` (the default) a score
      is the inner product, higher is closer; on unit-norm embeddings (what
      ``SentenceTransformerEmbeddings`` gives by default) it is the cosine similarity. With
      ``metric="l2"`` it is the Euclidean distance, lower is closer.

    ``string_factory`` is any faiss ``index_factory`` description. The default ``"Flat"`` is
    exact and fine up to a few hundred thousand rows; for more, an approximate index such as
    ``"IVF1024,Flat"`` (trained on ``train_size`` rows drawn with a fixed seed, searched with
    ``nprobe`` lists) or ``"HNSW32"`` trades a little recall for speed. A row whose embedding
    is ``None`` is left out of the index and gets ``None`` in both columns.
    """

    k: RuntimeParameter[PositiveInt] = Field(default=1, description="Neighbours per row.")
    metric: Literal["inner_product", "l2"] = Field(
        default="inner_product",
        description="'inner_product' (cosine on unit vectors; higher is closer) or 'l2'.",
    )
    string_factory: str = Field(default="Flat", description="faiss index_factory description.")
    train_size: PositiveInt | None = Field(
        default=None, description="Rows used to train an index that needs training (all if None)."
    )
    nprobe: PositiveInt | None = Field(
        default=None, description="Inverted lists searched by an IVF index (faiss default if None)."
    )
    search_batch_size: RuntimeParameter[PositiveInt] = Field(
        default=4096, description="Rows searched per call to the index."
    )
    seed: int = Field(default=0, description="Seed of the training sample.")

    @property
    def inputs(self) -> StepColumns:
        return ["embedding"]

    @property
    def outputs(self) -> StepColumns:
        return ["nn_indices", "nn_scores"]

    def load(self) -> None:
        require("faiss", feature="FaissNearestNeighbour", extra="faiss", package="faiss-cpu")
        super().load()

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        faiss = require(
            "faiss", feature="FaissNearestNeighbour", extra="faiss", package="faiss-cpu"
        )
        import numpy as np

        positions, matrix = self._embedding_matrix(inputs)
        neighbours: dict[int, tuple[list[int], list[float]]] = {}
        if positions:
            metric = (
                faiss.METRIC_INNER_PRODUCT if self.metric == "inner_product" else faiss.METRIC_L2
            )
            index = faiss.index_factory(matrix.shape[1], self.string_factory, metric)
            if not index.is_trained:
                sample = matrix
                if self.train_size is not None and self.train_size < len(matrix):
                    rng = np.random.default_rng(self.seed)
                    sample = matrix[rng.choice(len(matrix), self.train_size, replace=False)]
                index.train(sample)
            if self.nprobe is not None:
                faiss.ParameterSpace().set_index_parameter(index, "nprobe", self.nprobe)
            index.add(matrix)
            k = self.k or 1
            wanted = min(k + 1, len(positions))
            batch = self.search_batch_size or 4096
            for start in range(0, len(matrix), batch):
                scores, ids = index.search(matrix[start : start + batch], wanted)
                for offset in range(len(ids)):
                    me = start + offset
                    found = [
                        (int(j), float(s))
                        for j, s in zip(ids[offset], scores[offset], strict=True)
                        if j >= 0 and j != me
                    ][:k]
                    if self.metric == "l2":
                        found = [(j, float(np.sqrt(max(s, 0.0)))) for j, s in found]
                    neighbours[positions[me]] = (
                        [positions[j] for j, _ in found],
                        [s for _, s in found],
                    )
        output: list[Row] = []
        for i, row in enumerate(inputs):
            hit = neighbours.get(i)
            output.append(
                {
                    **row,
                    "nn_indices": hit[0] if hit else None,
                    "nn_scores": hit[1] if hit else None,
                }
            )
        yield output

    def _embedding_matrix(self, rows: StepInput) -> tuple[list[int], Any]:
        import numpy as np

        positions: list[int] = []
        vectors: list[Any] = []
        for i, row in enumerate(rows):
            value = row.get("embedding")
            if value is None:
                continue
            vector = np.asarray(value, dtype="float32")
            if vector.ndim != 1 or (vectors and vector.shape != vectors[0].shape):
                expected = f"length {vectors[0].shape[0]}" if vectors else "a flat list of floats"
                raise ColumnTypeError(
                    f"Step {self.name!r} (FaissNearestNeighbour): row {i} has an 'embedding' of "
                    f"shape {vector.shape}, expected {expected} like the rows before it. Every "
                    "row must be embedded by the same model."
                )
            positions.append(i)
            vectors.append(vector)
        if not vectors:
            return positions, np.zeros((0, 0), dtype="float32")
        return positions, np.ascontiguousarray(np.stack(vectors))


__all__ = ["FaissNearestNeighbour"]
