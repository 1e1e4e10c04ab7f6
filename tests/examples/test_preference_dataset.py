"""The preference-dataset recipe, end to end: on an OpenAI-compatible test server (fast,
with a judge that answers in the expected layout) and on the tiny local transformers model."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "preference_dataset.py"
COLUMNS = [
    "prompt",
    "prompt_id",
    "chosen",
    "chosen_model",
    "chosen_rating",
    "rejected",
    "rejected_model",
    "rejected_rating",
    "pair_status",
]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("preference_dataset_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def judge_or_answer(request: dict[str, Any], index: int) -> str:
    prompt = request["messages"][-1]["content"]
    if "Output for Text" in prompt:
        # the answer of model-b is rated higher, except for the tie instruction
        tie = "TIE" in prompt
        first, second = (3, 3) if tie else (2, 5)
        return (
            f"#### Output for Text 1\nRating: {first}\nRationale: ok.\n\n"
            f"#### Output for Text 2\nRating: {second}\nRationale: better."
        )
    return f"answer by {request['model']} to: {prompt}"


def test_recipe_on_a_server_builds_pairs(
    openai_server_factory: Callable[..., Any],
) -> None:
    server = openai_server_factory(reply=judge_or_answer)
    example = load_example()
    distiset = example.main(
        [
            "--base-url",
            server.base_url,
            "--model",
            "model-a",
            "--model-b",
            "model-b",
            "--judge-model",
            "judge",
            "--instructions",
            "Say hi",
            "Count to 3",
            "TIE please",
        ]
    )
    rows = distiset["default"]["train"].to_list()
    assert distiset["default"]["train"].column_names == COLUMNS
    assert [r["prompt"] for r in rows] == ["Say hi", "Count to 3", "TIE please"]
    first = rows[0]
    assert first["chosen"] == [
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "answer by model-b to: Say hi"},
    ]
    assert first["rejected"][-1]["content"] == "answer by model-a to: Say hi"
    assert (first["chosen_model"], first["chosen_rating"]) == ("model-b", 5)
    assert (first["rejected_model"], first["rejected_rating"]) == ("model-a", 2)
    assert first["pair_status"] == "ok"
    assert rows[2]["pair_status"] == "tie"
    assert rows[2]["chosen"] is None


def test_recipe_drop_unpaired_removes_ties(openai_server_factory: Callable[..., Any]) -> None:
    server = openai_server_factory(reply=judge_or_answer)
    distiset = load_example().main(
        [
            "--base-url",
            server.base_url,
            "--model",
            "m",
            "--drop-unpaired",
            "--instructions",
            "Say hi",
            "TIE please",
        ]
    )
    assert [r["prompt"] for r in distiset["default"]["train"].to_list()] == ["Say hi"]


@pytest.mark.slow
def test_recipe_on_the_tiny_local_model(tiny_model_path: Path) -> None:
    distiset = load_example().main(
        [
            "--model",
            str(tiny_model_path),
            "--max-new-tokens",
            "8",
            "--judge-max-new-tokens",
            "8",
            "--instructions",
            "Say hi",
            "Count to 3",
        ]
    )
    train = distiset["default"]["train"]
    assert train.column_names == COLUMNS
    assert train.num_rows == 2
    rows = train.to_list()
    assert [r["prompt"] for r in rows] == ["Say hi", "Count to 3"]
    # an untrained judge writes gibberish: no ratings, so no pair, and the row says why
    for row in rows:
        assert row["pair_status"] in {"ok", "tie", "too_few_rated"}
        assert (row["chosen"] is None) is (row["pair_status"] != "ok")
