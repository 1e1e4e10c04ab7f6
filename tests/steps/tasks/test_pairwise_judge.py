"""PairwiseJudge: prompt, verdict parsing, position swapping, failed rows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.base import METADATA_COLUMN
from alambic.steps.tasks.pairwise_judge import SWAP_KEY, PairwiseJudge, parse_verdict

ROW = {"instruction": "Capital of Italy?", "generations": ["Rome.", "Milan."]}


def make(**kwargs: Any) -> PairwiseJudge:
    task = PairwiseJudge(llm=FakeLLM(), **kwargs)
    task.load()
    return task


def prefers(answer: str) -> Any:
    """A judge that always prefers ``answer``, wherever it is shown."""

    def reply(messages: Any, index: int) -> str:
        prompt = messages[-1]["content"]
        a = prompt.split("[Assistant A's answer - start]\n")[1].split("\n[Assistant A's")[0]
        return f"{answer} is right.\n[[{'A' if a == answer else 'B'}]]"

    return reply


def position_biased(messages: Any, index: int) -> str:
    return "The first one looks better.\n[[A]]"


def test_prompt_shows_question_both_answers_and_rules() -> None:
    task = make(criteria="factual accuracy", reference=True)
    system, user = task.format_input({**ROW, "reference": "Rome"})
    assert "[[C]]" in system["content"]
    assert "factual accuracy" in system["content"]
    assert "[User question]\nCapital of Italy?" in user["content"]
    assert "[Reference answer]\nRome" in user["content"]
    assert "[Assistant A's answer - start]\nRome.\n[Assistant A's answer - end]" in user["content"]
    assert "[Assistant B's answer - start]\nMilan.\n" in user["content"]
    swapped = task.format_input({**ROW, "reference": "Rome", SWAP_KEY: True})[1]["content"]
    assert "[Assistant A's answer - start]\nMilan." in swapped


@pytest.mark.parametrize(
    ("reply", "winner", "reason"),
    [
        ("A is correct, B is not.\n[[A]]", "A", "A is correct, B is not."),
        ("Both fine.\n**[[C]]**", "tie", "Both fine."),
        ("```\nB explains more.\nFinal verdict: [[B]]\n```", "B", "B explains more."),
        ("Considering [[A]] first... no, [[B]]", "B", "Considering [[A]] first... no,"),
        ("B is better.\nVerdict: B", "B", "B is better."),
        ("Final verdict: tie", "tie", None),
    ],
)
def test_parse_verdict(reply: str, winner: str, reason: str | None) -> None:
    assert parse_verdict(reply) == {"winner": winner, "reason": reason}


@pytest.mark.parametrize("reply", ["", "Both have merits.", "[[D]]", "Assistant A is"])
def test_parse_verdict_garbage(reply: str) -> None:
    with pytest.raises(ReplyParseError, match="no verdict found"):
        parse_verdict(reply)


@pytest.mark.parametrize("pair", [["one"], ["a", None], ["a", "b", "c"]])
def test_needs_exactly_two_texts(pair: list[Any]) -> None:
    with pytest.raises(ColumnTypeError, match="exactly two texts"):
        make().format_input({"instruction": "q", "generations": pair})


def test_single_order_rows() -> None:
    task = make()
    assert isinstance(task.llm, FakeLLM)
    task.llm.enqueue("Rome is right.\n[[A]]", "hmm")
    good, bad = next(task.process([ROW, ROW]))
    assert (good["winner"], good["reason"]) == ("A", "Rome is right.")
    assert list(task.get_outputs()) == ["winner", "reason", "model_name"]
    assert bad["winner"] is None
    assert bad[METADATA_COLUMN][f"error_{task.name}"]["type"] == "ReplyParseError"


def test_swap_keeps_a_consistent_winner() -> None:
    task = make(swap_positions=True)
    task.llm.reply_fn = prefers("Rome.")  # type: ignore[attr-defined]
    [row] = next(task.process([ROW]))
    assert row["winner"] == "A"
    assert row["verdicts"] == ["A", "A"]
    assert row["reason"] == row["reason_swapped"] == "Rome. is right."
    assert SWAP_KEY not in row
    meta = row[METADATA_COLUMN]
    assert "Milan." in meta[f"raw_input_{task.name}_swapped"][1]["content"].split("[Assistant A")[1]
    assert len(task.llm.history) == 2  # type: ignore[attr-defined]


def test_swap_turns_position_bias_into_a_tie() -> None:
    task = make(swap_positions=True)
    task.llm.reply_fn = position_biased  # type: ignore[attr-defined]
    rows = next(task.process([ROW, {**ROW, "instruction": "again"}]))
    assert [r["winner"] for r in rows] == ["tie", "tie"]
    assert rows[0]["verdicts"] == ["A", "B"]
    assert [r["instruction"] for r in rows] == ["Capital of Italy?", "again"]


def test_swap_with_a_failed_second_request() -> None:
    task = make(swap_positions=True)
    assert isinstance(task.llm, FakeLLM)
    task.llm.enqueue("[[A]]", "no verdict here")
    [row] = next(task.process([ROW]))
    assert row["winner"] is None
    assert row["verdicts"] == ["A", None]
    assert "no verdict found" in row[METADATA_COLUMN][f"error_{task.name}"]["message"]


def test_swap_on_the_async_path_and_grouped() -> None:
    task = make(swap_positions=True, num_generations=2, group_generations=True)
    task.llm.reply_fn = prefers("Milan.")  # type: ignore[attr-defined]
    [row] = asyncio.run(task.aprocess_rows([ROW]))
    assert row["winner"] == ["B", "B"]
    assert row["verdicts"] == [["B", "B"], ["B", "B"]]
    assert len(row[METADATA_COLUMN]) == 2
