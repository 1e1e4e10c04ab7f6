from __future__ import annotations

import math

import pytest

from alambic.embeddings import SentenceTransformerEmbeddings
from alambic.errors import ColumnTypeError
from alambic.steps.embeddings import EmbeddingGeneration, FaissNearestNeighbour
from alambic.steps.filtering import EmbeddingDedup


def _marks(step: EmbeddingDedup, rows: list[dict[str, object]]) -> list[bool]:
    step.load()
    (batch,) = list(step.process(rows))
    return [row["keep_row_after_embedding_filtering"] for row in batch]  # type: ignore[misc]


def test_keeps_first_occurrence_and_drops_later_near_duplicate() -> None:
    rows = [
        {"nn_indices": [2], "nn_scores": [0.95]},
        {"nn_indices": [0], "nn_scores": [0.20]},
        {"nn_indices": [0], "nn_scores": [0.95]},
    ]
    assert _marks(EmbeddingDedup(threshold=0.9), rows) == [True, True, False]
    assert _marks(EmbeddingDedup(threshold=0.96), rows) == [True, True, True]


def test_a_chain_keeps_the_row_whose_only_duplicate_was_dropped() -> None:
    # A~B (0.95), B~C (0.93), A and C apart (0.7): B goes, C stays.
    rows = [
        {"nn_indices": [1, 2], "nn_scores": [0.95, 0.7]},
        {"nn_indices": [0, 2], "nn_scores": [0.95, 0.93]},
        {"nn_indices": [1, 0], "nn_scores": [0.93, 0.7]},
    ]
    assert _marks(EmbeddingDedup(), rows) == [True, False, True]


def test_l2_uses_distance_and_rows_without_neighbours_are_kept() -> None:
    rows = [
        {"nn_indices": [1], "nn_scores": [0.1], "id": "a"},
        {"nn_indices": [0], "nn_scores": [0.1], "id": "b"},
        {"nn_indices": None, "nn_scores": None, "id": "c"},
    ]
    assert _marks(EmbeddingDedup(metric="l2", threshold=0.2), rows) == [True, False, True]
    assert _marks(EmbeddingDedup(metric="l2", threshold=0.05), rows) == [True, True, True]


def test_neighbour_out_of_range_explains_the_wiring() -> None:
    with pytest.raises(ColumnTypeError, match=r"neighbour 7, but there are 1 rows"):
        _marks(EmbeddingDedup(), [{"nn_indices": [7], "nn_scores": [1.0]}])


def test_with_faiss_on_unit_vectors() -> None:
    def unit(deg: float) -> list[float]:
        return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]

    rows = [{"embedding": unit(a)} for a in (0, 90, 5, 180, 92)]
    nn = FaissNearestNeighbour(k=2)
    nn.load()
    (with_nn,) = list(nn.process(rows))
    # cos(5 deg) = 0.996, cos(2 deg) = 0.999: rows 2 and 4 repeat rows 0 and 1.
    assert _marks(EmbeddingDedup(threshold=0.99), with_nn) == [True, True, False, True, False]


@pytest.mark.slow
def test_minilm_paraphrase_is_dropped(minilm: SentenceTransformerEmbeddings) -> None:
    texts = [
        "How can I reset my password?",
        "What is the capital of Australia?",
        "How do I reset my password?",
        "Write a haiku about autumn leaves.",
    ]
    embed = EmbeddingGeneration(embeddings=minilm)
    nn = FaissNearestNeighbour(k=3)
    for step in (embed, nn):
        step.load()
    (rows,) = list(embed.process([{"text": t} for t in texts]))
    (rows,) = list(nn.process(rows))
    assert _marks(EmbeddingDedup(threshold=0.9), rows) == [True, True, False, True]
