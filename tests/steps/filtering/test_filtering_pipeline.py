from __future__ import annotations

import math
from typing import Any

from alambic.pipeline import Pipeline
from alambic.steps import (
    DeitaFiltering,
    EmbeddingDedup,
    FaissNearestNeighbour,
    LoadDataFromDicts,
    MinHashDedup,
)


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def _rows(distiset: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = distiset["default"]["train"].to_list()
    return rows


def test_faiss_then_embedding_dedup_across_batches() -> None:
    angles = [0, 90, 1, 45, 91, 180, 46, 0]
    data = [{"id": i, "embedding": _unit(a)} for i, a in enumerate(angles)]
    with Pipeline(name="embedding-dedup") as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=3)
        nn = FaissNearestNeighbour(k=2, input_batch_size=2)
        dedup = EmbeddingDedup(threshold=0.99)
        load >> nn >> dedup
    rows = _rows(pipeline.run(use_cache=False, show_progress=False))
    assert [row["id"] for row in rows] == list(range(8))
    assert [row["keep_row_after_embedding_filtering"] for row in rows] == [
        True, True, False, True, False, True, False, False,
    ]  # fmt: skip


def test_minhash_dedup_in_a_pipeline() -> None:
    texts = [
        "the quick brown fox jumps over the lazy dog",
        "an entirely different sentence about cooking pasta",
        "The quick brown fox jumps over the lazy dog!",
        "the quick brown fox jumps over the lazy cat",
    ]
    with Pipeline(name="minhash-dedup") as pipeline:
        load = LoadDataFromDicts(data=[{"prompt": t} for t in texts], batch_size=2)
        load >> MinHashDedup(threshold=0.7, input_mappings={"text": "prompt"})
    rows = _rows(pipeline.run(use_cache=False, show_progress=False))
    assert [row["prompt"] for row in rows] == texts
    # the cat variant shares 7 of 9 distinct words (0.78 >= 0.7) with the first row
    assert [row["keep_row_after_minhash_filtering"] for row in rows] == [True, True, False, False]


def test_deita_budget_set_at_run_time() -> None:
    data = [
        {"id": "a", "evol_instruction_score": 4.0, "evol_response_score": 5.0, "embedding": _unit(0)},
        {"id": "b", "evol_instruction_score": 5.0, "evol_response_score": 5.0, "embedding": _unit(3)},
        {"id": "c", "evol_instruction_score": 3.0, "evol_response_score": 4.0, "embedding": _unit(60)},
        {"id": "d", "evol_instruction_score": 1.0, "evol_response_score": 2.0, "embedding": _unit(120)},
    ]  # fmt: skip
    with Pipeline(name="deita") as pipeline:
        LoadDataFromDicts(data=data) >> DeitaFiltering(name="deita")
    distiset = pipeline.run(
        parameters={"deita": {"data_budget": 2}}, use_cache=False, show_progress=False
    )
    rows = _rows(distiset)
    assert [row["id"] for row in rows] == ["b", "c"]
    assert [row["deita_score"] for row in rows] == [25.0, 12.0]
