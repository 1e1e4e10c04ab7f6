"""The judges' shared parsing helpers."""

from __future__ import annotations

import pytest

from alambic.steps.tasks._judge_parsing import (
    clean_reply,
    parse_id_list,
    parse_indexed_scores,
    parse_int_in_range,
    parse_number,
)
from alambic.steps.tasks._parsing import ReplyParseError


def test_clean_reply_drops_fences_and_bold_but_keeps_code() -> None:
    reply = "Intro\r\n```markdown\r\n**Rating:** 4 for `__init__`\r\n```\r\nBye"
    assert clean_reply(reply) == "Intro\n\nRating: 4 for `__init__`\n\nBye"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4", 4),
        ("4/5", 4),
        ("4 out of 5", 4),
        ("N/A", None),
        ("7", None),
        ("3.5", None),
        ("", None),
        (None, None),
        ("5.0", 5),
    ],
)
def test_parse_int_in_range(value: str | None, expected: int | None) -> None:
    assert parse_int_in_range(value, 1, 5) == expected


def test_parse_number() -> None:
    assert parse_number("about 3.5 points") == 3.5
    assert parse_number("none") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1, 3", [1, 3]),
        ("None", []),
        ("[2]", [2]),
        ("1, 1, 9", [1]),
        ("unclear", None),
        (None, None),
        ("", []),
    ],
)
def test_parse_id_list(value: str | None, expected: list[int] | None) -> None:
    assert parse_id_list(value, (1, 2, 3)) == expected


def test_parse_indexed_scores_first_mention_wins_and_echoes_are_ignored() -> None:
    reply = "[1] Write 3 poems\n[1] Score: 2\n[1] Score: 3\n[2] 1"
    assert parse_indexed_scores(reply, 2, 1, 3) == [2.0, 1.0]


def test_parse_indexed_scores_raises_without_any_score() -> None:
    with pytest.raises(ReplyParseError, match="for the 2 items"):
        parse_indexed_scores("[1] Write 3 poems", 2, 1, 3)
