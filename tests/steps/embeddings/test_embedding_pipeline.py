from __future__ import annotations

import pytest

from alambic.embeddings import SentenceTransformerEmbeddings
from alambic.pipeline import Pipeline
from alambic.steps import (
    EmbeddingDedup,
    EmbeddingGeneration,
    FaissNearestNeighbour,
    LoadDataFromDicts,
)


@pytest.mark.slow
def test_minilm_embed_search_dedup_pipeline(minilm_path: str) -> None:
    texts = [
        "How can I reset my password?",
        "What is the capital of Australia?",
        "How do I reset my password?",
        "Write a haiku about autumn leaves.",
        "Which city is the capital of Australia?",
        "Give me a recipe for banana bread.",
    ]
    with Pipeline(name="semantic-dedup") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": t} for t in texts], batch_size=4)
        embed = EmbeddingGeneration(
            embeddings=SentenceTransformerEmbeddings(model=minilm_path),
            input_mappings={"text": "instruction"},
            input_batch_size=4,
        )
        nn = FaissNearestNeighbour(k=2)
        dedup = EmbeddingDedup(threshold=0.9)
        load >> embed >> nn >> dedup
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert [row["instruction"] for row in rows] == texts
    assert all(len(row["embedding"]) == 384 for row in rows)
    assert rows[2]["nn_indices"][0] == 0
    assert rows[4]["nn_indices"][0] == 1
    assert [row["keep_row_after_embedding_filtering"] for row in rows] == [
        True, True, False, True, False, True,
    ]  # fmt: skip
    assert rows[0]["model_name"] == minilm_path
