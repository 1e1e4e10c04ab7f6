from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import StructuredGeneration
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.structured_generation import check_schema

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "kind": {"enum": ["cat", "dog"]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
ROW = {"instruction": "Describe a pet.", "structured_output": SCHEMA}


def make(**kwargs: Any) -> StructuredGeneration:
    kwargs.setdefault("add_parsed_generation", True)
    return StructuredGeneration(name="sg", llm=FakeLLM(), **kwargs)


def test_prompt_holds_schema_and_instruction_and_spec() -> None:
    messages, spec = make(system_prompt="Be creative.").format_input(ROW)
    assert messages[-1] == {"role": "user", "content": "Describe a pet."}
    assert messages[0]["content"].startswith("Be creative.")
    assert '"required": [' in messages[0]["content"]
    assert spec == {"schema": SCHEMA}


def test_schema_may_be_json_text_or_wrapped() -> None:
    task = make(use_structured_output=False)
    for value in (json.dumps(SCHEMA), {"schema": SCHEMA, "format": "json"}):
        messages = task.format_input({"instruction": "x", "structured_output": value})
        assert isinstance(messages, list)
        assert '"additionalProperties": false' in messages[0]["content"]


def test_bad_schema_column() -> None:
    with pytest.raises(ColumnTypeError, match="not JSON"):
        make().format_input({"instruction": "x", "structured_output": "{oops"})
    with pytest.raises(ColumnTypeError, match="must hold a JSON schema"):
        make().format_input({"instruction": "x", "structured_output": 3})


@pytest.mark.parametrize(
    "reply",
    ['{"name": "Rex", "age": 3}', 'Here it is:\n```json\n{"name": "Rex", "age": 3}\n```\nEnjoy.'],
)
def test_format_output_returns_text_and_object(reply: str) -> None:
    out = make().format_output(reply, ROW)
    assert out == {
        "generation": '{"name": "Rex", "age": 3}',
        "parsed_generation": {"name": "Rex", "age": 3},
    }


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ('{"name": "Rex", "age": ', "truncated"),
        ("I'd rather not.", "no JSON"),
        ('{"name": "Rex"}', "lacks the required key"),
        ('{"name": "Rex", "age": "three"}', r"\$\.age should be integer"),
        ('{"name": "Rex", "age": true}', r"\$\.age should be integer"),
        ('{"name": "Rex", "age": 3, "color": "red"}', "not in the schema"),
        ('{"name": "Rex", "age": 3, "tags": ["a", "b", "c"]}', "more than 2"),
        ('{"name": "Rex", "age": 3, "kind": "bird"}', "not one of"),
        ('[{"name": "Rex", "age": 3}]', "should be object"),
    ],
)
def test_format_output_rejects_invalid_replies(reply: str, match: str) -> None:
    with pytest.raises(ReplyParseError, match=match):
        make().parse_output(reply, ROW)


def test_check_schema_nested_items() -> None:
    schema = {"type": "array", "items": {"type": "object", "required": ["x"]}, "minItems": 1}
    assert check_schema([{"x": 1}], schema) is None
    assert check_schema([], schema) == "$ has 0 items, fewer than 1"
    assert check_schema([{"y": 1}], schema) == "$[0] lacks the required key(s) ['x']"
    assert (
        check_schema(1.5, {"type": ["integer", "null"]}) == "$ should be integer or null, got float"
    )


def test_process_rows(run_task: Callable[..., Any], error_of: Callable[..., Any]) -> None:
    task = make()
    task.llm.enqueue('{"name": "Tom", "age": 2, "kind": "cat"}', '{"name": "Tom"}')  # type: ignore[attr-defined]
    rows = run_task(task, [ROW, ROW])
    assert rows[0]["parsed_generation"] == {"name": "Tom", "age": 2, "kind": "cat"}
    assert json.loads(rows[0]["generation"]) == rows[0]["parsed_generation"]
    assert (rows[1]["generation"], rows[1]["parsed_generation"]) == (None, None)
    # the reason comes from format_output, or from the LLM's structured-output validation
    assert "required" in error_of(rows[1], "sg")["message"]


def test_process_without_schema_uses_the_task_parser(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    task = make(use_structured_output=False)
    task.llm.enqueue('{"name": "Tom", "age": 2}', '{"name": "Tom"}')  # type: ignore[attr-defined]
    rows = run_task(task, [ROW, ROW])
    assert rows[0]["parsed_generation"] == {"name": "Tom", "age": 2}
    assert rows[1]["parsed_generation"] is None
    assert "lacks the required key(s) ['age']" in error_of(rows[1], "sg")["message"]
