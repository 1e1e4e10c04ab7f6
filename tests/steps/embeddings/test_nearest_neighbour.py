from __future__ import annotations

import math

import pytest

from alambic.embeddings import SentenceTransformerEmbeddings
from alambic.errors import ColumnTypeError
from alambic.steps.embeddings import EmbeddingGeneration, FaissNearestNeighbour


def _unit(angle_degrees: float) -> list[float]:
    rad = math.radians(angle_degrees)
    return [math.cos(rad), math.sin(rad)]


ROWS = [{"embedding": _unit(a), "id": i} for i, a in enumerate([0, 10, 90, 100, 180])]


def _run(step: FaissNearestNeighbour, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    step.load()
    batches = list(step.process(rows))
    assert len(batches) == 1
    return batches[0]


def test_inner_product_neighbours_exclude_the_row_itself() -> None:
    out = _run(FaissNearestNeighbour(k=2), ROWS)
    assert [row["nn_indices"] for row in out] == [[1, 2], [0, 2], [3, 1], [2, 4], [3, 2]]
    assert out[0]["nn_scores"] == pytest.approx([math.cos(math.radians(10)), 0.0], abs=1e-6)
    assert out[4]["nn_scores"] == pytest.approx([math.cos(math.radians(80)), 0.0], abs=1e-6)
    assert out[0]["id"] == 0


def test_l2_scores_are_euclidean_distances() -> None:
    out = _run(FaissNearestNeighbour(k=1, metric="l2"), ROWS)
    assert [row["nn_indices"] for row in out] == [[1], [0], [3], [2], [3]]
    # chord length between unit vectors 10 degrees apart
    assert out[0]["nn_scores"] == pytest.approx([2 * math.sin(math.radians(5))], abs=1e-5)


def test_exact_duplicates_find_each_other() -> None:
    rows = [{"embedding": [1.0, 0.0]}, {"embedding": [0.0, 1.0]}, {"embedding": [1.0, 0.0]}]
    out = _run(FaissNearestNeighbour(k=1), rows)
    assert [row["nn_indices"] for row in out] == [[2], [0], [0]]
    assert out[2]["nn_scores"] == pytest.approx([1.0])


def test_k_larger_than_the_dataset_and_none_embeddings() -> None:
    rows = [{"embedding": [1.0, 0.0]}, {"embedding": None}, {"embedding": [0.0, 1.0]}]
    out = _run(FaissNearestNeighbour(k=5), rows)
    assert out[0]["nn_indices"] == [2]
    assert out[2]["nn_indices"] == [0]
    assert out[1]["nn_indices"] is None
    assert out[1]["nn_scores"] is None
    assert _run(FaissNearestNeighbour(), []) == []


def test_mismatched_dimensions_name_the_row() -> None:
    rows = [{"embedding": [1.0, 0.0]}, {"embedding": [1.0, 0.0, 0.0]}]
    with pytest.raises(ColumnTypeError, match=r"row 1 .*shape \(3,\), expected length 2"):
        _run(FaissNearestNeighbour(name="nn"), rows)


def test_trained_ivf_index_matches_flat_on_clustered_data() -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    centers = rng.normal(size=(4, 8))
    points = np.concatenate([c + 0.01 * rng.normal(size=(25, 8)) for c in centers])
    rows = [{"embedding": p.tolist()} for p in points]
    flat = _run(FaissNearestNeighbour(k=3, metric="l2"), rows)
    ivf = _run(
        FaissNearestNeighbour(
            k=3, metric="l2", string_factory="IVF4,Flat", nprobe=4, train_size=80
        ),
        rows,
    )
    assert [r["nn_indices"] for r in ivf] == [r["nn_indices"] for r in flat]
    # every neighbour lies in the row's own cluster of 25
    assert all(j // 25 == i // 25 for i, r in enumerate(flat) for j in r["nn_indices"])


@pytest.mark.slow
def test_minilm_paraphrase_is_the_nearest_neighbour(
    minilm: SentenceTransformerEmbeddings,
) -> None:
    texts = [
        "The cat is sleeping on the sofa.",
        "Python is a popular programming language.",
        "A cat naps on the couch.",
        "Many developers write code in Python.",
    ]
    embed = EmbeddingGeneration(embeddings=minilm)
    embed.load()
    (rows,) = list(embed.process([{"text": t} for t in texts]))
    out = _run(FaissNearestNeighbour(k=1), rows)
    assert [row["nn_indices"] for row in out] == [[2], [3], [0], [1]]
    assert all(row["nn_scores"][0] > 0.5 for row in out)
