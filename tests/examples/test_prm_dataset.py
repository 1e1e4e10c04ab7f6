"""The PRM (Math-Shepherd) recipe end to end: on an OpenAI-compatible test server, whose
solver makes a mistake in one solution, and on the tiny local transformers model."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prm_dataset.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prm_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def solver(request: dict[str, Any], index: int) -> str:
    """Pens problem: one right solution and one wrong one; completions follow the steps."""
    prompt = request["messages"][-1]["content"]
    if "times, each time in a different way" in prompt:
        if "pens" in prompt:
            return (
                "Step 1: 4 packs of 6 is 24 pens.\nStep 2: 24 - 9 = 15.\nThe answer is: 15\n---\n"
                "Step 1: 4 packs of 6 is 20 pens.\nStep 2: 20 - 9 = 11.\nThe answer is: 11"
            )
        return (
            "Step 1: I do not know.\nThe answer is: 0\n---\nStep 1: Still unsure.\nThe answer is: 1"
        )
    if "Continue the solution" in prompt:
        if "is 24 pens" in prompt:
            return "Step 2: 24 - 9 = 15.\nThe answer is: 15"
        if "is 20 pens" in prompt:
            return "Step 2: 20 - 9 = 11.\nThe answer is: 11"
        return "The answer is: 7"
    return "?"


def test_recipe_on_a_server_labels_steps(openai_server_factory: Callable[..., Any]) -> None:
    server = openai_server_factory(reply=solver)
    distiset = load_example().main(
        ["--base-url", server.base_url, "--model", "m", "--completions", "2"]
    )
    train = distiset["default"]["train"]
    assert {"input", "label"} <= set(train.column_names)
    rows = [r for r in train.to_list() if "pens" in r["instruction"]]
    assert len(rows) == 2
    good, bad = rows
    assert good["label"].endswith("Step 1: 4 packs of 6 is 24 pens. +\nStep 2: 24 - 9 = 15. +")
    assert bad["label"].endswith("Step 1: 4 packs of 6 is 20 pens. -\nStep 2: 20 - 9 = 11. -")
    assert good["input"].count("ки") == 2
    assert len(train) == 6  # three problems, two solutions each


def test_recipe_trl_format(openai_server_factory: Callable[..., Any]) -> None:
    server = openai_server_factory(reply=solver)
    distiset = load_example().main(
        ["--base-url", server.base_url, "--model", "m", "--completions", "1", "--format", "trl"]
    )
    rows = [r for r in distiset["default"]["train"].to_list() if "pens" in r["prompt"]]
    assert rows[0]["completions"] == ["Step 1: 4 packs of 6 is 24 pens.", "Step 2: 24 - 9 = 15."]
    assert rows[0]["labels"] == [True, True]
    assert rows[1]["labels"] == [False, False]


@pytest.mark.slow
def test_recipe_on_the_tiny_local_model(tiny_model_path: Path) -> None:
    distiset = load_example().main(
        [
            "--model",
            str(tiny_model_path),
            "--max-new-tokens",
            "8",
            "--completions",
            "1",
            "--no-format",
        ]
    )
    rows = distiset["default"]["train"].to_list()
    assert len(rows) == 3
    for row in rows:
        meta = row["alambic_metadata"]
        # a random model writes no readable solution: each problem fails with the reason
        if row["solutions"] is None:
            assert re.search(r"solution|upstream", meta["error_complete"]["message"])
        else:
            assert all(step.endswith((" +", " -")) for sol in row["solutions"] for step in sol)
