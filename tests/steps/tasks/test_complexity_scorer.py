"""ComplexityScorer (Deita): prompt, score parsing, failed rows."""

from __future__ import annotations

from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.base import METADATA_COLUMN
from alambic.steps.tasks.complexity_scorer import ComplexityScorer

ROW = {"instructions": ["Add 2 and 2.", "Prove there are infinitely many primes.", "Say hi."]}


def make() -> ComplexityScorer:
    task = ComplexityScorer(llm=FakeLLM())
    task.load()
    return task


def test_prompt_lists_every_instruction_and_the_answer_format() -> None:
    [message] = make().format_input(ROW)
    prompt = message["content"]
    assert "Rank the following 3 instructions" in prompt
    assert "Give 4 to an instruction too complex" in prompt
    assert "[1] Add 2 and 2.\n[2] Prove there are infinitely many primes.\n[3] Say hi." in prompt
    assert "[3] Score: <score>" in prompt


@pytest.mark.parametrize(
    ("reply", "scores"),
    [
        ("[1] Score: 2\n[2] Score: 3\n[3] Score: 1", [2.0, 3.0, 1.0]),
        (
            "Here is my ranking:\n```\n**[1]** Score: 2\n[2] Score: 4\n[3] Score: 1\n```\nDone.",
            [2.0, 4.0, 1.0],
        ),
        ("[2] Score: 3\n[1] Score: 1.5\n[3]: 9", [1.5, 3.0, None]),  # out of order, out of range
        ("[1] Score: 2\n[2] Sco", [2.0, None, None]),  # truncated
        ("Score: 1\nScore: 3", [1.0, 3.0, None]),  # no indices: in order
    ],
)
def test_parse_scores(reply: str, scores: list[Any]) -> None:
    assert make().format_output(reply, ROW) == {"scores": scores}


@pytest.mark.parametrize("reply", ["", "These are all easy.", "[1] Add 2 and 2."])
def test_garbage_raises(reply: str) -> None:
    with pytest.raises(ReplyParseError, match=r"no '\[i\] Score: <number>' line"):
        make().parse_output(reply, ROW)


@pytest.mark.parametrize("value", [None, [], "one", ["a", 1]])
def test_instructions_must_be_a_list_of_texts(value: Any) -> None:
    with pytest.raises(ColumnTypeError, match="MergeColumns"):
        make().format_input({"instructions": value})


def test_process_rows() -> None:
    task = make()
    assert isinstance(task.llm, FakeLLM)
    task.llm.enqueue("[1] Score: 1\n[2] Score: 3\n[3] Score: 2", "I refuse")
    good, bad = next(task.process([ROW, ROW]))
    assert good["scores"] == [1.0, 3.0, 2.0]
    assert bad["scores"] is None
    assert bad[METADATA_COLUMN][f"error_{task.name}"]["type"] == "ReplyParseError"
