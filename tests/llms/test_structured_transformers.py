"""Structured output through a real local model.

With ``outlines`` installed, TransformersLLM constrains decoding natively: a random
(untrained) tiny model, which writes garbage unconstrained, must write valid JSON. Without
it, the schema goes into the prompt and each reply is validated and re-asked (prompt + parse).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from alambic.llms.structured import resolve_spec
from alambic.llms.transformers import TransformersLLM

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}

# Every field is bounded, so a random model cannot run past max_new_tokens: outlines_core
# ignores minimum/maximum for integers but honours its own ``maxDigits`` keyword.
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "maxDigits": 3},
    },
    "required": ["name", "age"],
}

SHORT = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 5}},
    "required": ["answer"],
}


def _assert_person(text: str | None) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert text is not None
    value = json.loads(text)
    jsonschema.validate(value, PERSON)
    assert list(value) == ["name", "age"]  # outlines keeps the schema's property order


@pytest.mark.slow
def test_without_native_mode_replies_are_validated_and_reasked(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TransformersLLM, "supports_native_structured_output", lambda s, x: False)
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


def test_native_mode_needs_outlines(monkeypatch: pytest.MonkeyPatch) -> None:
    llm = TransformersLLM(model="unused")
    spec = resolve_spec(PERSON)
    monkeypatch.setitem(sys.modules, "outlines", None)  # as if not installed
    assert llm.supports_native_structured_output(spec) is False
    # the fallback: the schema is written into the prompt, no native spec is sent
    request = llm.structured_request([{"role": "user", "content": "hi"}], spec)
    assert isinstance(request, list)
    assert '"maxLength": 8' in str(request[-1]["content"])


@pytest.fixture(scope="module")
def native_llm(tiny_model_path: Path) -> Any:
    pytest.importorskip("outlines", reason="native structured output needs `outlines`")
    llm = TransformersLLM(
        model=str(tiny_model_path),
        structured_output_retries=0,  # validity must come from the constraint alone
        generation_kwargs={"max_new_tokens": 64, "seed": 0},
    )
    llm.load()
    return llm


@pytest.mark.slow
def test_outlines_constrains_a_random_model_to_the_schema(native_llm: TransformersLLM) -> None:
    assert native_llm.supports_native_structured_output(resolve_spec(PERSON)) is True
    plain = [{"role": "user", "content": "Tell me anything"}]
    inputs: list[Any] = [
        ([{"role": "user", "content": f"Describe person {i}"}], {"schema": PERSON})
        for i in range(3)
    ]
    out = native_llm.generate([*inputs, plain], num_generations=2)
    assert len(out) == 4
    for result in out[:3]:
        assert "errors" not in result or not any(result["errors"])
        assert len(result["generations"]) == 2
        for text in result["generations"]:
            _assert_person(text)
    # the plain prompt in the same call is not constrained: the random model rambles
    for text in out[3]["generations"]:
        assert text is not None
        with pytest.raises(ValueError):
            json.loads(text)
    # the compiled schema is reused, not rebuilt, by the next call (and greedy works too)
    processors = dict(native_llm._processors)
    again = native_llm.generate(inputs[:2], do_sample=False)
    assert native_llm._processors == processors
    for result in again:
        _assert_person(result["generations"][0])


@pytest.mark.slow
def test_tasks_get_schema_valid_rows_natively(native_llm: TransformersLLM) -> None:
    from alambic.steps.tasks.structured_generation import StructuredGeneration
    from alambic.steps.tasks.text_generation import TextGeneration

    llm = native_llm.model_copy()
    llm.structured_output = PERSON  # the LLM-wide schema, for a task that sets none
    llm._model, llm._tokenizer = native_llm._model, native_llm._tokenizer
    task = TextGeneration(llm=llm)
    task.load()
    rows = next(task.process([{"instruction": "Who?"}, {"instruction": "Who else?"}]))
    assert len(rows) == 2
    for row in rows:
        _assert_person(row["generation"])

    per_row = StructuredGeneration(llm=native_llm, add_parsed_generation=True)
    per_row.load()
    rows = next(
        per_row.process(
            [
                {"instruction": "A person", "structured_output": PERSON},
                {"instruction": "Anything", "structured_output": json.dumps(SHORT)},
            ]
        )
    )
    _assert_person(rows[0]["generation"])
    assert rows[0]["parsed_generation"] == json.loads(rows[0]["generation"])
    answer = json.loads(rows[1]["generation"])["answer"]
    assert isinstance(answer, str)
    assert len(answer) <= 5


@pytest.mark.slow
def test_a_schema_outlines_cannot_compile_goes_into_the_prompt(
    native_llm: TransformersLLM, caplog: pytest.LogCaptureFixture
) -> None:
    spec = resolve_spec({"type": "string", "format": "hostname"})  # no outlines support
    with caplog.at_level("WARNING", logger="alambic"):
        assert native_llm.supports_native_structured_output(spec) is False
    assert "could not compile" in caplog.text
    assert "hostname" in caplog.text
    request = native_llm.structured_request([{"role": "user", "content": "host?"}], spec)
    assert isinstance(request, list)  # plain messages: the prompt + parse path
