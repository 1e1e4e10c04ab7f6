"""Structured output: extraction, validation, prompt fallback and bounded re-asks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from alambic.errors import AlambicUserError
from alambic.llms.fake import FakeLLM
from alambic.llms.structured import (
    _minimal_error,
    extract_json,
    resolve_spec,
    validate_reply,
    with_instructions,
)
from alambic.llms.typing import ChatType


class Answer(BaseModel):
    name: str
    score: int


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "score": {"type": "integer", "minimum": 0}},
    "required": ["name", "score"],
    "additionalProperties": False,
}

MESSAGES: ChatType = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "rate it"},
]


def test_extract_json_from_plain_fenced_and_prose_replies() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('Sure!\n```json\n{"a": [1, 2]}\n```\nDone.') == {"a": [1, 2]}
    assert extract_json('The answer is {"a": {"b": "}"}} as requested.') == {"a": {"b": "}"}}
    # a raw tab inside a string (llama.cpp's JSON grammar lets a model write one)
    assert extract_json('{"note": "a\tb"}') == {"note": "a\tb"}
    assert extract_json('Here: {"note": "a\nb"} ok') == {"note": "a\nb"}
    with pytest.raises(ValueError, match="no JSON value"):
        extract_json("no json here")


def test_resolve_spec_accepts_models_schemas_and_wrapped_specs() -> None:
    model_spec = resolve_spec(Answer)
    assert model_spec.model is Answer
    assert model_spec.name == "Answer"
    assert model_spec.schema["required"] == ["name", "score"]
    assert resolve_spec(SCHEMA).schema is SCHEMA
    wrapped = resolve_spec({"format": "json", "schema": Answer})
    assert wrapped.model is Answer
    named = resolve_spec({"name": "grade", "schema": SCHEMA})
    assert named.wire() == {"name": "grade", "schema": SCHEMA}
    with pytest.raises(AlambicUserError, match="got str"):
        resolve_spec("not a schema")


@pytest.mark.parametrize("spec", [Answer, SCHEMA])
def test_validate_reply_returns_clean_json_or_the_reason(spec: Any) -> None:
    resolved = resolve_spec(spec)
    text, reason = validate_reply('Here: ```{"name": "x", "score": 3}```', resolved)
    assert reason is None
    assert text is not None
    assert json.loads(text) == {"name": "x", "score": 3}
    text, reason = validate_reply('{"name": "x"}', resolved)
    assert text is None
    assert reason is not None
    assert "score" in reason
    assert validate_reply(None, resolved) == (None, "the LLM returned no text")


def test_minimal_validator_without_jsonschema() -> None:
    assert _minimal_error({"name": "x", "score": 1}, SCHEMA, SCHEMA, "$") is None
    assert "missing required property 'score'" in str(
        _minimal_error({"name": "x"}, SCHEMA, SCHEMA, "$")
    )
    assert "below the minimum" in str(
        _minimal_error({"name": "x", "score": -1}, SCHEMA, SCHEMA, "$")
    )
    assert "unexpected property 'z'" in str(
        _minimal_error({"name": "x", "score": 1, "z": 0}, SCHEMA, SCHEMA, "$")
    )
    assert "expected integer" in str(
        _minimal_error({"name": "x", "score": True}, SCHEMA, SCHEMA, "$")
    )
    ref_schema = {"$defs": {"A": SCHEMA}, "type": "array", "items": {"$ref": "#/$defs/A"}}
    assert "$[0]" in str(_minimal_error([{"name": 1, "score": 1}], ref_schema, ref_schema, "$"))


def test_with_instructions_appends_the_schema_to_the_last_user_message() -> None:
    spec = resolve_spec(SCHEMA)
    out = with_instructions(MESSAGES, spec, previous_error="missing score")
    assert out[0] == MESSAGES[0]
    assert out[1]["content"].startswith("rate it\n\nAnswer with a single JSON value")
    assert '"required": ["name", "score"]' in out[1]["content"]
    assert "previous answer was rejected: missing score" in out[1]["content"]
    assert MESSAGES[1]["content"] == "rate it"  # the caller's messages are untouched


def test_prompt_fallback_validates_and_reasks_invalid_replies() -> None:
    llm = FakeLLM(structured_output=Answer, structured_output_retries=2)
    llm.enqueue("I think it is good", '```json\n{"name": "ok", "score": 5}\n```')
    out = llm.generate([MESSAGES])[0]
    assert out["generations"] == ['{"name": "ok", "score": 5}']
    assert "errors" not in out
    assert len(llm.history) == 2
    first, second = (h["messages"][-1]["content"] for h in llm.history)
    assert "Answer with a single JSON value" in first
    assert "previous answer was rejected" in second
    assert llm.history[0]["schema"] is None  # FakeLLM has no native mode: prompt only


def test_a_reply_that_never_validates_is_a_failed_generation() -> None:
    llm = FakeLLM(structured_output=SCHEMA, structured_output_retries=1)
    llm.enqueue("nope", '{"name": "x"}')
    out = llm.generate([MESSAGES])[0]
    assert out["generations"] == [None]
    error = out["errors"][0]  # type: ignore[index]
    assert error is not None
    assert error["kind"] == "structured_output"
    assert error["type"] == "StructuredOutputError"
    assert "does not match the schema" in error["message"]
    assert "score" in error["message"]
    assert len(llm.history) == 2


def test_row_schema_from_format_input_wins_and_only_invalid_generations_are_reasked() -> None:
    llm = FakeLLM(structured_output_retries=2)
    llm.enqueue('{"name": "a", "score": 1}', "bad", '{"name": "c", "score": 3}')
    out = llm.generate([(MESSAGES, {"format": "json", "schema": Answer})], num_generations=2)[0]
    assert [json.loads(t) for t in out["generations"] if t] == [
        {"name": "a", "score": 1},
        {"name": "c", "score": 3},
    ]
    assert [h["num_generations"] for h in llm.history] == [2, 1]


def test_native_mode_sends_the_wire_spec_and_reasks_with_the_prompt_too() -> None:
    class NativeFake(FakeLLM):
        def supports_native_structured_output(self, spec: Any) -> bool:
            return True

    llm = NativeFake(structured_output=Answer)
    llm.enqueue("ignored the schema", '{"name": "n", "score": 2}')
    out = llm.generate([MESSAGES])[0]
    assert out["generations"] == ['{"name": "n", "score": 2}']
    first, second = llm.history
    assert first["schema"]["name"] == "Answer"
    assert first["schema"]["schema"]["required"] == ["name", "score"]
    assert first["messages"] == MESSAGES
    assert "previous answer was rejected" in second["messages"][-1]["content"]
    assert second["schema"] == first["schema"]


def test_structured_generation_uses_the_same_validator_with_refs_and_any_of() -> None:
    from alambic.steps.tasks.structured_generation import check_schema

    schema = {
        "$defs": {"Pet": {"type": "object", "required": ["name"]}},
        "type": "object",
        "properties": {
            "pet": {"$ref": "#/$defs/Pet"},
            "age": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
    }
    # the task's old checker ignored $ref and anyOf: both replies passed
    assert check_schema({"pet": {}, "age": 1}, schema) == "$.pet lacks the required key(s) ['name']"
    assert check_schema({"pet": {"name": "Rex"}, "age": "x"}, schema) == (
        "$.age matches none of the anyOf alternatives"
    )
    assert check_schema({"pet": {"name": "Rex"}, "age": None}, schema) is None
