"""PrometheusEval: rubrics, absolute and relative prompts, verdict parsing, failed rows."""

from __future__ import annotations

from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.base import METADATA_COLUMN
from alambic.steps.tasks.prometheus_eval import (
    PROMETHEUS_RUBRICS,
    PrometheusEval,
    parse_absolute,
    parse_relative,
)

ABS_ROW = {"instruction": "What is 2+2?", "generation": "5", "reference": "4"}
REL_ROW = {"instruction": "What is 2+2?", "generations": ["5", "4"], "reference": "4"}


def make(**kwargs: Any) -> PrometheusEval:
    kwargs.setdefault("rubric", "factual-validity")
    task = PrometheusEval(llm=FakeLLM(), **kwargs)
    task.load()
    return task


def test_builtin_rubrics_have_a_criterion_and_five_levels() -> None:
    assert sorted(PROMETHEUS_RUBRICS) == [
        "factual-validity",
        "harmlessness",
        "helpfulness",
        "honesty",
        "reasoning",
    ]
    for text in PROMETHEUS_RUBRICS.values():
        lines = text.splitlines()
        assert lines[0].startswith("[")
        assert [line.split(":")[0] for line in lines[1:]] == [f"Score {i}" for i in range(1, 6)]


def test_unknown_rubric_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown rubric 'tone'.*'reasoning'"):
        PrometheusEval(llm=FakeLLM(), rubric="tone")


def test_absolute_prompt_with_reference_and_custom_rubric() -> None:
    task = make(
        rubric="tone",
        rubrics={"tone": "[Is it polite?]\nScore 1: rude\nScore 5: kind"},
        reference=True,
    )
    assert task.get_inputs() == {"instruction": True, "generation": True, "reference": True}
    system, user = task.format_input(ABS_ROW)
    assert system["role"] == "system"
    prompt = user["content"]
    assert "###Instruction:\nWhat is 2+2?" in prompt
    assert "###Response to evaluate:\n5" in prompt
    assert "###Reference answer (score 5):\n4" in prompt
    assert "[Is it polite?]\nScore 1: rude\nScore 5: kind" in prompt
    assert "[RESULT] <integer from 1 to 5>" in prompt


def test_absolute_prompt_without_reference() -> None:
    prompt = make().format_input(ABS_ROW)[1]["content"]
    assert "Reference" not in prompt
    assert PROMETHEUS_RUBRICS["factual-validity"] in prompt


def test_relative_prompt_shows_both_responses_and_the_criterion_only() -> None:
    task = make(mode="relative", rubric="reasoning")
    assert task.get_inputs() == {"instruction": True, "generations": True}
    prompt = task.format_input(REL_ROW)[1]["content"]
    assert "###Response A:\n5" in prompt
    assert "###Response B:\n4" in prompt
    assert "[Is the reasoning in the response logical, complete and correct?]" in prompt
    assert "Score 1" not in prompt
    assert "[RESULT] <A or B>" in prompt


@pytest.mark.parametrize("pair", [["only one"], ["a", None], "ab"])
def test_relative_needs_two_texts(pair: Any) -> None:
    with pytest.raises(ColumnTypeError, match="exactly two texts"):
        make(mode="relative").format_input({"instruction": "q", "generations": pair})


@pytest.mark.parametrize(
    ("reply", "feedback", "result"),
    [
        ("Feedback: Wrong sum. [RESULT] 1", "Wrong sum.", 1),
        ("```\nFeedback: Good.\n[RESULT] 5\n```", "Good.", 5),
        (
            "Sure! Here you go.\nFeedback: ok **[RESULT]**: (4)\nThanks",
            "Sure! Here you go.\nFeedback: ok",
            4,
        ),
        ("The answer is partly right.\nScore: 3", "The answer is partly right.", 3),
    ],
)
def test_parse_absolute(reply: str, feedback: str, result: int) -> None:
    assert parse_absolute(reply) == {"feedback": feedback, "result": result}


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("Feedback: it is fine but", "no '\\[RESULT\\] <1-5>'"),
        ("Feedback: x [RESULT]", "no score after it"),
        ("Feedback: x [RESULT] 9", "not an integer from 1 to 5"),
        ("Feedback: x [RESULT] 3.5", "not an integer from 1 to 5"),
        ("lorem ipsum", "no '\\[RESULT\\] <1-5>'"),
    ],
)
def test_parse_absolute_failures(reply: str, message: str) -> None:
    with pytest.raises(ReplyParseError, match=message):
        parse_absolute(reply)


@pytest.mark.parametrize(
    ("reply", "result"),
    [
        ("Feedback: B is right. [RESULT] B", "B"),
        ("Feedback: A wins.\n[RESULT]: (A)", "A"),
        ('Feedback: hmm [RESULT] "Response b"', "B"),
        ("Overall, Response A is better.", "A"),
        ("Verdict: [[B]]", "B"),
    ],
)
def test_parse_relative(reply: str, result: str) -> None:
    assert parse_relative(reply)["result"] == result


@pytest.mark.parametrize("reply", ["Feedback: both are fine [RESULT] C", "no idea", ""])
def test_parse_relative_failures(reply: str) -> None:
    with pytest.raises(ReplyParseError):
        parse_relative(reply)


def test_process_good_and_unparsable_rows() -> None:
    task = make(mode="relative", rubric="helpfulness")
    assert isinstance(task.llm, FakeLLM)
    task.llm.enqueue("Feedback: B is correct. [RESULT] B", "Feedback: cut off befo")
    good, bad = next(task.process([REL_ROW, REL_ROW]))
    assert (good["feedback"], good["result"]) == ("B is correct.", "B")
    assert bad["feedback"] is None
    assert bad["result"] is None
    assert (
        "no '[RESULT] A' or '[RESULT] B'" in bad[METADATA_COLUMN][f"error_{task.name}"]["message"]
    )
