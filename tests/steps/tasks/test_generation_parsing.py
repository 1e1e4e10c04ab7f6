from __future__ import annotations

import pytest

from alambic.steps.tasks._parsing import (
    ReplyParseError,
    extract_json,
    extract_json_object,
    parse_list_items,
    parse_score,
    parse_sections,
    strip_fences,
)


def test_strip_fences_takes_the_inside_of_the_first_fence() -> None:
    assert strip_fences("Sure:\n```python\nprint(1)\n```\nbye") == "print(1)"
    assert strip_fences("  no fence ") == "no fence"
    assert strip_fences('```json\n{"a": 1}') == '{"a": 1}'  # unclosed fence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure! ```json\n{"a": [1, 2]}\n``` Hope it helps', {"a": [1, 2]}),
        ('Here you go: {"a": "b"} -- done.', {"a": "b"}),
        ("The list: [1, 2, 3]", [1, 2, 3]),
        ('I think [citation needed] so {"x": null}', {"x": None}),
    ],
)
def test_extract_json_finds_the_value_in_prose_and_fences(text: str, expected: object) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [('{"a": [1, 2', "truncated"), ("no json here at all", "no JSON"), ("", "no JSON")],
)
def test_extract_json_rejects_truncated_and_missing(text: str, reason: str) -> None:
    with pytest.raises(ReplyParseError, match=reason):
        extract_json(text)


def test_extract_json_object_skips_arrays() -> None:
    assert extract_json_object('[1, 2] then {"k": true}') == {"k": True}
    with pytest.raises(ReplyParseError, match="no JSON object"):
        extract_json_object("[1, 2]")


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Good answer.\nScore: 4", 4),
        ("**Rating**: 3/5", 3),
        ("5", 5),
        ("I would give it 2 out of 5.", 2),
        ('{"score": 1, "reason": "bad"}', 1),
        ("Score - **5**", 5),
        ("Score: 2 at first, but on reflection...\nScore: 4", 4),
        ("Give it as 'Score: <1-5>'.\nScore: 3", 3),
    ],
)
def test_parse_score_reads_common_forms(text: str, score: int) -> None:
    assert parse_score(text) == score


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Score: 9", "outside the range 1-5"),
        ("Score: 3.5", "not a whole number"),
        ("meh", "no score"),
    ],
)
def test_parse_score_rejects_out_of_range_and_missing(text: str, reason: str) -> None:
    with pytest.raises(ReplyParseError, match=reason):
        parse_score(text)


def test_parse_score_float_range() -> None:
    assert parse_score("score: 7.5", low=0, high=10, integer=False) == 7.5


def test_parse_sections_accepts_several_header_styles() -> None:
    text = "Intro\n## Positive\nA cat sits.\n**Negative:** A dog runs.\nHard_Negative: x"
    assert parse_sections(text, ["positive", "negative", "hard negative"]) == {
        "positive": "A cat sits.",
        "negative": "A dog runs.",
        "hard negative": "x",
    }
    assert parse_sections("nothing", ["positive"]) == {}


def test_parse_list_items_drops_intro_and_numbering() -> None:
    text = "Here are three:\n1. First one\n2) Second one\n- **Third** one\n"
    assert parse_list_items(text) == ["First one", "Second one", "Third one"]
    assert parse_list_items("alpha\n\nbeta") == ["alpha", "beta"]
