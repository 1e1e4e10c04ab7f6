"""The function-calling (APIGen) recipe end to end: on an OpenAI-compatible test server (the
real functions run in the sandbox) and on the tiny local transformers model."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "function_calling_dataset.py"

CALLS = {
    "convert_temperature": [
        {"name": "convert_temperature", "arguments": {"value": 100, "unit": "celsius"}}
    ],
    "word_count": [{"name": "word_count", "arguments": {"text": "hello big world"}}],
    # a wrong argument name: the execution check must catch it
    "compound_interest": [
        {"name": "compound_interest", "arguments": {"amount": 1000, "rate": 0.05, "years": 2}}
    ],
}


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("function_calling_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def reply(request: dict[str, Any], index: int) -> str:
    prompt = request["messages"][-1]["content"]
    if "different request" in prompt:
        name = re.search(r"for the function `(\w+)`", prompt).group(1)  # type: ignore[union-attr]
        return json.dumps([{"query": f"Please use {name}.", "answers": CALLS[name]}])
    if "Does this data pass?" in prompt:
        failed = "TypeError" in prompt
        return json.dumps(
            {"thought": "bad call" if failed else "", "passes": "no" if failed else "yes"}
        )
    return "?"


def test_recipe_on_a_server_runs_and_checks_the_calls(
    openai_server_factory: Callable[..., Any],
) -> None:
    server = openai_server_factory(reply=reply)
    distiset = load_example().main(
        ["--base-url", server.base_url, "--model", "m", "--timeout", "30"]
    )
    train = distiset["default"]["train"]
    assert train.column_names == load_example().OUTPUT_COLUMNS
    rows = {r["func_name"]: r for r in train.to_list()}
    assert sorted(rows) == sorted(CALLS)
    temperature = rows["convert_temperature"]
    assert temperature["query"] == "Please use convert_temperature."
    assert json.loads(temperature["answers"]) == CALLS["convert_temperature"]
    assert temperature["execution_result"] == ["212.0"]
    assert temperature["keep_row_after_execution_check"] is True
    assert temperature["keep_row_after_semantic_check"] is True
    assert json.loads(temperature["tools"])[0]["function"]["parameters"]["required"] == ["value"]
    assert rows["word_count"]["execution_result"] == ["3"]
    interest = rows["compound_interest"]
    assert interest["keep_row_after_execution_check"] is False
    assert "unexpected keyword argument 'amount'" in interest["execution_result"][0]
    assert interest["keep_row_after_semantic_check"] is False


def test_recipe_drop_failed_keeps_verified_rows(openai_server_factory: Callable[..., Any]) -> None:
    server = openai_server_factory(reply=reply)
    distiset = load_example().main(
        ["--base-url", server.base_url, "--model", "m", "--drop-failed", "--timeout", "30"]
    )
    names = sorted(distiset["default"]["train"]["func_name"])
    assert names == ["convert_temperature", "word_count"]


@pytest.mark.slow
def test_recipe_on_the_tiny_local_model(tiny_model_path: Path) -> None:
    distiset = load_example().main(["--model", str(tiny_model_path), "--max-new-tokens", "8"])
    train = distiset["default"]["train"]
    assert train.column_names == load_example().OUTPUT_COLUMNS
    assert sorted(train["func_name"]) == sorted(CALLS)
    # an untrained model writes no valid calls: every row is kept, marked as failing, with why
    for row in train.to_list():
        assert row["query"] is None
        assert row["keep_row_after_execution_check"] is False
        assert row["execution_result"]
