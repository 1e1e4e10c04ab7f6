from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import Genstruct
from alambic.steps.tasks._parsing import ReplyParseError


def make() -> Genstruct:
    return Genstruct(name="genstruct", llm=FakeLLM())


def test_prompt_holds_title_content_and_markers() -> None:
    messages = make().format_input({"title": "Photosynthesis", "content": "Plants use light."})
    prompt = messages[-1]["content"]
    assert "[[[Title]]] Photosynthesis" in prompt
    assert "[[[Content]]] Plants use light." in prompt
    assert prompt.rstrip().endswith("[[[User]]]")


def test_format_input_needs_text_columns() -> None:
    with pytest.raises(ColumnTypeError, match="'content'"):
        make().format_input({"title": "t", "content": None})


@pytest.mark.parametrize(
    "reply",
    [
        " Why are leaves green?\n[[[Assistant]]] Because of chlorophyll.",
        "[[[User]]] Why are leaves green?\n\n[[[Assistant]]]\nBecause of chlorophyll.\n[[[User]]] more?",
        "Why are leaves green? [[[ assistant ]]] Because of chlorophyll.\n[[[Title]]] junk",
    ],
)
def test_format_output_splits_question_and_answer(reply: str) -> None:
    assert make().format_output(reply, {}) == {
        "user": "Why are leaves green?",
        "assistant": "Because of chlorophyll.",
    }


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("Why are leaves green? Because", "no '\\[\\[\\[Assistant\\]\\]\\]' marker"),
        ("[[[Assistant]]] Only an answer", "empty question"),
        ("A question? [[[Assistant]]]   ", "empty answer"),
        ("%%%garbage%%%", "marker"),
    ],
)
def test_format_output_rejects_bad_replies(reply: str, reason: str) -> None:
    with pytest.raises(ReplyParseError, match=reason):
        make().parse_output(reply, {})


def test_process_rows(run_task: Callable[..., Any], error_of: Callable[..., Any]) -> None:
    task = make()
    task.llm.enqueue("What is X? [[[Assistant]]] X is Y.", "truncated question with no ans")  # type: ignore[attr-defined]
    rows = run_task(task, [{"title": "a", "content": "b"}, {"title": "c", "content": "d"}])
    assert (rows[0]["user"], rows[0]["assistant"]) == ("What is X?", "X is Y.")
    assert (rows[1]["user"], rows[1]["assistant"]) == (None, None)
    assert "marker" in error_of(rows[1], "genstruct")["message"]  # type: ignore[index]
