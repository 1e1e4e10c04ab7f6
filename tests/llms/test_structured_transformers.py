"""Structured output through a real local model: TransformersLLM has no native mode, so the
schema goes into the prompt and each reply is validated and re-asked (prompt + parse)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alambic.llms.transformers import TransformersLLM

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@pytest.mark.slow
def test_tiny_model_replies_are_validated_and_reasked(tiny_model_path: Path) -> None:
    llm = TransformersLLM(
        model=str(tiny_model_path),
        structured_output=SCHEMA,
        structured_output_retries=1,
        generation_kwargs={"max_new_tokens": 8, "do_sample": False},
    )
    llm.load()
    out = llm.generate([[{"role": "user", "content": "Say hi"}]] * 2)
    # an untrained model never writes the JSON: both rows fail with the validation reason
    for result in out:
        assert result["generations"] == [None]
        error = result["errors"][0]  # type: ignore[index]
        assert error is not None
        assert error["kind"] == "structured_output"
        assert "no JSON value" in error["message"] or "does not match" in error["message"]
