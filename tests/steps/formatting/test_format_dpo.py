"""DPO formatting: chosen = best, rejected = lowest/random lower; ties and Nones explicit."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.steps.formatting import FormatChatGenerationDPO, FormatTextGenerationDPO


def row(generations: list[Any], ratings: Any, **extra: Any) -> dict[str, Any]:
    return {"instruction": "Q?", "generations": generations, "ratings": ratings, **extra}


def run(step: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = next(step.process(rows))
    return out


def conv(answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": answer}]


def test_best_and_lowest_with_models() -> None:
    [out] = run(
        FormatTextGenerationDPO(add_pair_status=True),
        [row(["a", "b", "c"], [3, 5, 1], generation_models=["m1", "m2", "m3"])],
    )
    assert out["prompt"] == "Q?"
    assert out["prompt_id"] == hashlib.sha256(b"Q?").hexdigest()
    assert out["chosen"] == conv("b")
    assert (out["chosen_model"], out["chosen_rating"]) == ("m2", 5)
    assert out["rejected"] == conv("c")
    assert (out["rejected_model"], out["rejected_rating"]) == ("m3", 1)
    assert out["pair_status"] == "ok"
    assert out["generations"] == ["a", "b", "c"]


def test_ties_on_best_and_worst_take_the_first() -> None:
    [out] = run(FormatTextGenerationDPO(), [row(["a", "b", "c", "d"], [5, 5, 2, 2])])
    assert out["chosen"] == conv("a")
    assert out["rejected"] == conv("c")
    assert out["chosen_model"] is None


def test_none_ratings_and_none_generations_are_skipped() -> None:
    [out] = run(
        FormatTextGenerationDPO(add_pair_status=True),
        [row(["a", None, "c", "d"], [None, 5, 4, float("nan")])],
    )
    # "b" is missing (None generation), "a" and "d" unrated: only "c" is a candidate
    assert out["pair_status"] == "too_few_rated"
    [out] = run(FormatTextGenerationDPO(), [row(["a", None, "c", "d"], [2, 5, 4, None])])
    assert out["chosen"] == conv("c")
    assert out["rejected"] == conv("a")


@pytest.mark.parametrize(
    ("generations", "ratings", "status"),
    [
        (["a", "b"], [4, 4], "tie"),
        (["a", "b", "c"], [3, 3, 3], "tie"),
        (["a", "b"], None, "too_few_rated"),
        (["a", "b"], [None, None], "too_few_rated"),
        (["a"], [5], "too_few_rated"),
    ],
)
def test_rows_without_a_pair_are_flagged(generations: list[Any], ratings: Any, status: str) -> None:
    [out] = run(FormatTextGenerationDPO(add_pair_status=True), [row(generations, ratings)])
    assert out["pair_status"] == status
    for column in ("chosen", "chosen_model", "chosen_rating", "rejected", "rejected_rating"):
        assert out[column] is None


def test_drop_removes_unpaired_rows() -> None:
    out = run(
        FormatTextGenerationDPO(tie_strategy="drop"),
        [row(["a", "b"], [4, 4]), row(["a", "b"], [1, 2]), row(["a", "b"], None)],
    )
    assert len(out) == 1
    assert out[0]["chosen"] == conv("b")


def test_random_rejected_is_lower_and_reproducible() -> None:
    rows = [{**row(["a", "b", "c", "d"], [5, 4, 3, 1]), "instruction": f"Q{i}"} for i in range(30)]
    first = [
        r["rejected"][-1]["content"]
        for r in run(FormatTextGenerationDPO(rejected_strategy="random"), rows)
    ]
    again = [
        r["rejected"][-1]["content"]
        for r in run(FormatTextGenerationDPO(rejected_strategy="random"), rows)
    ]
    assert first == again
    assert set(first) == {"b", "c", "d"}  # never the chosen one, every lower one can be drawn


def test_system_prompt_goes_into_both_conversations() -> None:
    [out] = run(FormatTextGenerationDPO(), [row(["a", "b"], [1, 2], system_prompt="Be kind.")])
    assert out["chosen"][0] == {"role": "system", "content": "Be kind."}
    assert out["rejected"][0] == {"role": "system", "content": "Be kind."}


def test_ratings_length_mismatch_is_an_error() -> None:
    with pytest.raises(ColumnTypeError, match="one rating per generation"):
        run(FormatTextGenerationDPO(), [row(["a", "b"], [1])])


def test_chat_dpo_uses_the_conversation() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
    ]
    [out] = run(
        FormatChatGenerationDPO(),
        [{"messages": messages, "generations": ["4", "5"], "ratings": [5.0, 1.5]}],
    )
    assert out["prompt"] == "2+2?"
    assert out["chosen"] == [*messages, {"role": "assistant", "content": "4"}]
    assert out["rejected"] == [*messages, {"role": "assistant", "content": "5"}]
    assert (out["chosen_rating"], out["rejected_rating"]) == (5.0, 1.5)


def test_declared_columns() -> None:
    step = FormatTextGenerationDPO(add_pair_status=True)
    assert list(step.get_outputs()) == [
        "prompt",
        "prompt_id",
        "chosen",
        "chosen_model",
        "chosen_rating",
        "rejected",
        "rejected_model",
        "rejected_rating",
        "pair_status",
    ]
    assert step.get_inputs()["generation_models"] is False
