"""UltraFeedback: prompt rendering, reply parsing (good, noisy, truncated, garbage), rows."""

from __future__ import annotations

from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.base import METADATA_COLUMN
from alambic.steps.tasks.ultrafeedback import UltraFeedback, parse_feedback

ROW: dict[str, Any] = {
    "instruction": "Name the capital of France.",
    "generations": ["Paris.", "Lyon, obviously."],
}

PLAIN_REPLY = """#### Output for Text 1
Rating: 5
Rationale: Correct and direct.

#### Output for Text 2
Rating: 1
Rationale: Wrong city.
"""

TYPED_REPLY = """Here is my evaluation.

```markdown
#### Output for Text 1
Type: None
Rationale: Nothing invented.
Rating: 5
Rationale: Fully accurate.

#### Output for Text 2
Type: 1, 3
Rationale: States a false fact and contradicts itself.
Rating: 2
Rationale: The main claim is wrong.
```
Let me know if you need more."""


def make(aspect: str = "overall-rating", **kwargs: Any) -> UltraFeedback:
    task = UltraFeedback(llm=FakeLLM(), aspect=aspect, **kwargs)  # type: ignore[arg-type]
    task.load()
    return task


@pytest.mark.parametrize(
    ("aspect", "marker"),
    [
        ("helpfulness", "informativeness"),
        ("honesty", "uncertainty"),
        ("instruction-following", "restrictions"),
        ("truthfulness", "hallucination"),
        ("overall-rating", "overall quality"),
    ],
)
def test_prompt_holds_aspect_instruction_and_every_response(aspect: str, marker: str) -> None:
    messages = make(aspect).format_input(ROW)
    assert [m["role"] for m in messages] == ["system", "user"]
    prompt = messages[1]["content"]
    assert marker in prompt.lower()
    assert "Name the capital of France." in prompt
    assert "<text 1>\nParis.\n</text 1>" in prompt
    assert "<text 2>\nLyon, obviously.\n</text 2>" in prompt
    assert "Rate each of the 2 responses" in prompt
    assert ("Type:" in prompt) is (aspect in {"helpfulness", "truthfulness"})


def test_columns_depend_on_aspect() -> None:
    assert make("honesty").get_outputs() == {
        "ratings": True,
        "rationales": True,
        "model_name": True,
    }
    assert list(make("truthfulness").get_outputs()) == [
        "types",
        "rationales",
        "ratings",
        "rationales-for-ratings",
        "model_name",
    ]
    assert make().get_inputs() == {"instruction": True, "generations": True}


def test_none_generations_are_hidden_from_the_judge_and_get_none() -> None:
    task = make()
    row = {"instruction": "Q", "generations": [None, "first shown", "second shown"]}
    prompt = task.format_input(row)[1]["content"]
    assert "<text 1>\nfirst shown\n</text 1>" in prompt
    assert "<text 3>" not in prompt
    out = task.format_output(PLAIN_REPLY, row)
    assert out == {
        "ratings": [None, 5, 1],
        "rationales": [None, "Correct and direct.", "Wrong city."],
    }


def test_well_formed_plain_reply() -> None:
    assert make("honesty").format_output(PLAIN_REPLY, ROW) == {
        "ratings": [5, 1],
        "rationales": ["Correct and direct.", "Wrong city."],
    }


def test_typed_reply_with_prose_and_fences() -> None:
    assert make("truthfulness").format_output(TYPED_REPLY, ROW) == {
        "types": [[], [1, 3]],
        "rationales": ["Nothing invented.", "States a false fact and contradicts itself."],
        "ratings": [5, 2],
        "rationales-for-ratings": ["Fully accurate.", "The main claim is wrong."],
    }


def test_bold_labels_fractions_and_na() -> None:
    reply = "**Text 1**\n**Rating:** 4/5\n**Rationale:** Good.\n\n**Text 2**\nRating: N/A\nRationale: Empty."
    assert make().format_output(reply, ROW) == {
        "ratings": [4, None],
        "rationales": ["Good.", "Empty."],
    }


def test_blocks_without_headers_are_taken_in_order() -> None:
    reply = "Rating: 3\nRationale: fine\nRating: 2\nRationale: weaker"
    assert parse_feedback(reply, 2, typed=False) == {
        "ratings": [3, 2],
        "rationales": ["fine", "weaker"],
    }


def test_out_of_range_rating_is_none() -> None:
    reply = "Text 1\nRating: 9\nRationale: x\nText 2\nRating: 2\nRationale: y"
    assert make().format_output(reply, ROW)["ratings"] == [None, 2]


def test_truncated_reply_keeps_what_it_has() -> None:
    reply = PLAIN_REPLY.split("#### Output for Text 2")[0] + "#### Output for Text 2\nRat"
    assert make().format_output(reply, ROW) == {
        "ratings": [5, None],
        "rationales": ["Correct and direct.", None],
    }


@pytest.mark.parametrize("garbage", ["", "I cannot rate these.", "Rating: excellent", "{}"])
def test_garbage_raises_a_clear_error(garbage: str) -> None:
    with pytest.raises(ReplyParseError, match="no 'Rating: <1-5>' found"):
        make().parse_output(garbage, ROW)


def test_process_rows_good_and_failed() -> None:
    task = make("instruction-following")
    assert isinstance(task.llm, FakeLLM)
    task.llm.enqueue(PLAIN_REPLY, "no idea, sorry")
    rows = next(task.process([ROW, ROW]))
    assert rows[0]["ratings"] == [5, 1]
    assert rows[0]["model_name"] == "fake-model"
    assert f"error_{task.name}" not in rows[0][METADATA_COLUMN]
    assert rows[1]["ratings"] is None
    assert rows[1]["rationales"] is None
    error = rows[1][METADATA_COLUMN][f"error_{task.name}"]
    assert error["type"] == "ReplyParseError"
    assert "no 'Rating: <1-5>' found" in error["message"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"instruction": "Q", "generations": "one string"}, "must be a list"),
        ({"instruction": "Q", "generations": [None, None]}, "every entry"),
        ({"instruction": 3, "generations": ["a"]}, "'instruction' must hold text"),
    ],
)
def test_bad_rows_become_failed_rows_with_reason(row: dict[str, Any], message: str) -> None:
    task = make()
    with pytest.raises(ColumnTypeError, match=message):
        task.format_input(row)
