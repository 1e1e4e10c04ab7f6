from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import SelfInstruct
from alambic.steps.tasks._parsing import ReplyParseError


def make(**kwargs: object) -> SelfInstruct:
    return SelfInstruct(name="self_instruct", llm=FakeLLM(), **kwargs)  # type: ignore[arg-type]


def test_prompt_holds_input_count_criteria_and_application() -> None:
    task = make(
        num_instructions=3,
        criteria_for_query_generation="Be brief.",
        application_description="a cooking assistant",
    )
    messages = task.format_input({"input": "sourdough bread"})
    assert [m["role"] for m in messages] == ["user"]
    prompt = messages[0]["content"]
    for needle in (
        "sourdough bread",
        "3 different requests",
        "Be brief.",
        "a cooking assistant",
        "numbered 1 to 3",
    ):
        assert needle in prompt


def test_system_prompt_is_sent_first() -> None:
    messages = make(system_prompt="You are terse.").format_input({"input": "x"})
    assert messages[0] == {"role": "system", "content": "You are terse."}


def test_format_input_rejects_non_text() -> None:
    with pytest.raises(ColumnTypeError, match="'input' must hold text"):
        make().format_input({"input": 3})


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "1. How do I feed a starter?\n2. Why is my loaf flat?",
            ["How do I feed a starter?", "Why is my loaf flat?"],
        ),
        (
            "Here are some:\n\n1) First request here\n2) Second request here\n\nEnjoy!",
            ["First request here", "Second request here"],
        ),
        ("```\n- Alpha request\n- Beta request\n```", ["Alpha request", "Beta request"]),
        (
            "1. One request\n2. Two request\n3. Three request\n4. Four req",
            ["One request", "Two request"],
        ),
    ],
)
def test_format_output_reads_lists(reply: str, expected: list[str]) -> None:
    assert make(num_instructions=2).format_output(reply, {}) == {"instructions": expected}


@pytest.mark.parametrize("reply", ["", "  \n ", "1.\n2."])
def test_format_output_rejects_empty_replies(reply: str) -> None:
    with pytest.raises(ReplyParseError, match="no instruction"):
        make().parse_output(reply, {})


def test_process_builds_rows_and_keeps_unparsable_as_failed(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    task = make(num_instructions=2)
    task.llm.enqueue("1. Write a poem about rye\n2. Explain gluten", "\n\n")  # type: ignore[attr-defined]
    rows = run_task(task, [{"input": "bread"}, {"input": "cheese"}])
    assert rows[0]["instructions"] == ["Write a poem about rye", "Explain gluten"]
    assert rows[0]["model_name"] == "fake-model"
    assert error_of(rows[0], "self_instruct") is None
    assert rows[1]["instructions"] is None
    error = error_of(rows[1], "self_instruct")
    assert error is not None
    assert error["type"] == "ReplyParseError"
    assert "no instruction" in error["message"]
