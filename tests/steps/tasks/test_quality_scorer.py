"""QualityScorer (Deita): prompt, score parsing, failed rows."""

from __future__ import annotations

from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.base import METADATA_COLUMN
from alambic.steps.tasks.quality_scorer import QualityScorer

ROW = {
    "instruction": "What is the boiling point of water?",
    "responses": ["100 C at sea level.", "Hot."],
}


def make() -> QualityScorer:
    task = QualityScorer(llm=FakeLLM())
    task.load()
    return task


def test_prompt_holds_instruction_responses_and_format() -> None:
    prompt = make().format_input(ROW)[0]["content"]
    assert "#Instruction#\nWhat is the boiling point of water?" in prompt
    assert "#Response 1#\n100 C at sea level." in prompt
    assert "#Response 2#\nHot." in prompt
    assert "[Response 2] Score: <score>" in prompt
    assert "up to 2 for the best" in prompt


@pytest.mark.parametrize(
    ("reply", "scores"),
    [
        ("[Response 1] Score: 2\n[Response 2] Score: 1", [2.0, 1.0]),
        (
            "Sure.\n- **[Response 1]** Score: 2\n- **[Response 2]** Score: 1\nThe first is precise.",
            [2.0, 1.0],
        ),
        ("[Response 1] Score: 7\n[Response 2] Score: 1", [None, 1.0]),
        ("[Response 1] Score: 2\n[Response", [2.0, None]),
    ],
)
def test_parse_scores(reply: str, scores: list[Any]) -> None:
    assert make().format_output(reply, ROW) == {"scores": scores}


@pytest.mark.parametrize("reply", ["", "Both are great!", "{'scores': 'n/a'}"])
def test_garbage_raises(reply: str) -> None:
    with pytest.raises(ReplyParseError):
        make().parse_output(reply, ROW)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"instruction": "q", "responses": "a"}, "'responses' must be a non-empty list"),
        ({"instruction": "q", "responses": ["a", None]}, "'responses' must be a non-empty list"),
        ({"instruction": None, "responses": ["a"]}, "'instruction' must hold text"),
    ],
)
def test_bad_columns(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ColumnTypeError, match=message):
        make().format_input(row)


def test_process_rows() -> None:
    task = make()
    assert isinstance(task.llm, FakeLLM)
    task.llm.enqueue("[Response 1] Score: 2\n[Response 2] Score: 1", "garbage")
    good, bad = next(task.process([ROW, ROW]))
    assert good["scores"] == [2.0, 1.0]
    assert bad["scores"] is None
    assert "no '[i] Score: <number>'" in bad[METADATA_COLUMN][f"error_{task.name}"]["message"]
