from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import InstructionBacktranslation
from alambic.steps.tasks._parsing import ReplyParseError


def make() -> InstructionBacktranslation:
    return InstructionBacktranslation(name="ib", llm=FakeLLM())


def test_prompt_holds_pair_scale_and_answer_format() -> None:
    prompt = make().format_input({"instruction": "Name a prime.", "generation": "7"})[-1]["content"]
    assert "Name a prime." in prompt
    assert "Answer:\n7" in prompt
    for point in ("1:", "2:", "3:", "4:", "5:"):
        assert point in prompt
    assert "Score: <1-5>" in prompt


@pytest.mark.parametrize(
    ("reply", "score", "reason"),
    [
        ("The answer is correct but terse.\nScore: 4", 4, "The answer is correct but terse."),
        ("Reasoning: off-topic.\n\n**Score:** 1", 1, "off-topic."),
        ("```\nScore: 5\n```", 5, "```\n\n```"),
        ("Score: 3", 3, None),
    ],
)
def test_format_output_reads_score_and_reason(reply: str, score: int, reason: str | None) -> None:
    assert make().format_output(reply, {}) == {"score": score, "reason": reason}


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ("Great answer. Score: 9", "outside"),
        ("I cannot judge this.", "no score"),
        ("Reason: fine. Sco", "no score"),
    ],
)
def test_format_output_rejects_bad_scores(reply: str, match: str) -> None:
    with pytest.raises(ReplyParseError, match=match):
        make().parse_output(reply, {})


def test_process_rows(run_task: Callable[..., Any], error_of: Callable[..., Any]) -> None:
    task = make()
    task.llm.enqueue("Helpful.\nScore: 5", "no idea")  # type: ignore[attr-defined]
    rows = run_task(task, [{"instruction": "a", "generation": "b"}] * 2)
    assert (rows[0]["score"], rows[0]["reason"]) == (5, "Helpful.")
    assert (rows[1]["score"], rows[1]["reason"]) == (None, None)
    assert error_of(rows[1], "ib")["type"] == "ReplyParseError"  # type: ignore[index]
