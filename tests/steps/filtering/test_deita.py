from __future__ import annotations

import logging
import math

import pytest

from alambic.embeddings import SentenceTransformerEmbeddings
from alambic.errors import ColumnTypeError
from alambic.steps.embeddings import EmbeddingGeneration
from alambic.steps.filtering import DeitaFiltering


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def _select(step: DeitaFiltering, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    step.load()
    (batch,) = list(step.process(rows))
    return batch


ROWS = [
    # id, complexity, quality, angle: "b" is a near copy of "a" (3 degrees apart).
    {"id": "a", "evol_instruction_score": 4.0, "evol_response_score": 5.0, "embedding": _unit(0)},
    {"id": "b", "evol_instruction_score": 5.0, "evol_response_score": 5.0, "embedding": _unit(3)},
    {"id": "c", "evol_instruction_score": 3.0, "evol_response_score": 4.0, "embedding": _unit(60)},
    {"id": "d", "evol_instruction_score": 1.0, "evol_response_score": 2.0, "embedding": _unit(120)},
    {"id": "e", "evol_instruction_score": 2.0, "evol_response_score": 5.0, "embedding": _unit(62)},
]


def test_top_scores_within_budget_skipping_near_copies() -> None:
    out = _select(DeitaFiltering(data_budget=3), ROWS)
    # scores: b 25, a 20, c 12, e 10, d 2. a is 3 degrees from b (distance 0.0014): skipped.
    # e is 2 degrees from c: skipped. So b, c, d.
    assert [row["id"] for row in out] == ["b", "c", "d"]
    assert [row["deita_score"] for row in out] == [25.0, 12.0, 2.0]
    assert out[0]["nearest_neighbor_distance"] is None
    assert out[1]["nearest_neighbor_distance"] == pytest.approx(1 - math.cos(math.radians(57)))
    assert out[0]["deita_score_computed_with"] == ["evol_instruction_score", "evol_response_score"]
    assert out[0]["embedding"] == ROWS[1]["embedding"]


def test_budget_caps_and_threshold_zero_keeps_plain_ranking() -> None:
    out = _select(DeitaFiltering(data_budget=2, diversity_threshold=0.0), ROWS)
    assert [row["id"] for row in out] == ["b", "a"]


def test_fewer_diverse_rows_than_budget_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="alambic"):
        out = _select(DeitaFiltering(data_budget=10, diversity_threshold=0.5), ROWS)
    # 1 - cos(60) = 0.5 is not > 0.5, so only b and d (117 degrees from b) survive.
    assert [row["id"] for row in out] == ["b", "d"]
    assert "selected 2 rows of a data_budget of 10" in caplog.text


def test_missing_scores_multi_turn_and_unrankable_rows() -> None:
    rows = [
        {"evol_instruction_score": None, "evol_response_score": 3.0, "embedding": _unit(0)},
        {
            "evol_instruction_score": [2.0, 3.0],
            "evol_response_score": [1.0, 4.0],
            "embedding": _unit(90),
        },
        {"evol_instruction_score": None, "evol_response_score": None, "embedding": _unit(180)},
        {"evol_instruction_score": 9.0, "evol_response_score": 9.0, "embedding": None},
        {"evol_instruction_score": 2.5, "embedding": _unit(270)},
    ]
    out = _select(DeitaFiltering(data_budget=5), rows)
    assert [row["deita_score"] for row in out] == [14.0, 3.0, 2.5]  # 2*1 + 3*4 = 14
    assert [row["deita_score_computed_with"] for row in out] == [
        ["evol_instruction_score", "evol_response_score"],
        ["evol_response_score"],
        ["evol_instruction_score"],
    ]


def test_normalization_makes_scale_irrelevant() -> None:
    rows = [
        {"evol_instruction_score": 2.0, "evol_response_score": 2.0, "embedding": [10.0, 0.0]},
        {"evol_instruction_score": 1.0, "evol_response_score": 1.0, "embedding": [0.5, 0.01]},
    ]
    assert len(_select(DeitaFiltering(data_budget=2), rows)) == 1
    # unnormalized: 1 - 10*0.5 is negative, far under the threshold too; and a scaled copy
    # reads as diverse only when the user says the vectors are unit norm but they are not.
    assert len(_select(DeitaFiltering(data_budget=2, normalize_embeddings=False), rows)) == 1


def test_errors_name_the_problem() -> None:
    with pytest.raises(ColumnTypeError, match=r"row 0 has 2 evol_instruction_score values but 1"):
        _select(
            DeitaFiltering(data_budget=1),
            [{"evol_instruction_score": [1, 2], "evol_response_score": [1], "embedding": [1.0]}],
        )
    with pytest.raises(ColumnTypeError, match=r"'evol_response_score' holds 'great'"):
        _select(
            DeitaFiltering(data_budget=1),
            [{"evol_response_score": "great", "embedding": [1.0]}],
        )
    with pytest.raises(ValueError, match=r"diversity_threshold=5.0 is not a cosine distance"):
        DeitaFiltering(data_budget=1, diversity_threshold=5.0)
    step = DeitaFiltering()
    assert step.missing_runtime_parameters() == ["data_budget"]
    assert step.inputs == {
        "evol_instruction_score": False,
        "evol_response_score": False,
        "embedding": True,
    }


@pytest.mark.slow
def test_minilm_selects_diverse_topics(minilm: SentenceTransformerEmbeddings) -> None:
    texts = [
        "Explain how photosynthesis converts light into chemical energy.",
        "Describe how plants turn sunlight into chemical energy through photosynthesis.",
        "Write a Python function that reverses a linked list.",
        "Summarize the causes of the French Revolution.",
    ]
    scores = [(5.0, 5.0), (5.0, 4.9), (4.0, 4.0), (3.0, 3.0)]
    embed = EmbeddingGeneration(embeddings=minilm)
    embed.load()
    (rows,) = list(
        embed.process(
            [
                {"text": t, "evol_instruction_score": c, "evol_response_score": q}
                for t, (c, q) in zip(texts, scores, strict=True)
            ]
        )
    )
    # MiniLM puts the two photosynthesis paraphrases at cosine similarity 0.89: the paper's
    # 0.1 distance lets both in, 0.2 keeps one and makes room for another topic.
    out = _select(DeitaFiltering(data_budget=3), rows)
    assert [row["text"] for row in out] == texts[:3]
    out = _select(DeitaFiltering(data_budget=3, diversity_threshold=0.2), rows)
    assert [row["text"] for row in out] == [texts[0], texts[2], texts[3]]
    assert all(row["nearest_neighbor_distance"] > 0.8 for row in out[1:])
