"""Helpers for reading judges' replies, on top of :mod:`alambic.steps.tasks._parsing`.

Judges are asked for a fixed layout ("Rating: 4", "[RESULT] B", "[2] Score: 3"...), but real
replies wrap it in markdown fences and bold markers, add prose, or stop half way when
``max_new_tokens`` runs out. The judge tasks find what can be found and raise
:class:`~alambic.steps.tasks._parsing.ReplyParseError` when nothing usable is left; the
``Task`` base turns that into a row with ``None`` outputs and the message in
``alambic_metadata["error_<task name>"]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from alambic.steps.tasks._parsing import ReplyParseError, preview

_FENCE_LINE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$", re.MULTILINE)
_EMPHASIS = re.compile(r"\*\*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def clean_reply(text: str) -> str:
    """The reply with fence lines and bold markers (``**``) removed and ``\\n`` line ends.

    Unlike ``strip_fences`` (which keeps only the first fenced block), this keeps the whole
    text: a judge often fences only part of its answer.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _FENCE_LINE.sub("", text)
    return _EMPHASIS.sub("", text)


def parse_int_in_range(value: str | None, low: int, high: int) -> int | None:
    """The first number in ``value`` if it is a whole number in ``[low, high]``, else ``None``.

    ``"4"``, ``"4/5"``, ``"4 out of 5"`` give 4; ``"N/A"``, ``"7"`` (out of range), ``"3.5"``
    and ``""`` give ``None``.
    """
    if value is None:
        return None
    match = _NUMBER.search(value)
    if match is None:
        return None
    number = float(match.group())
    if not number.is_integer() or not low <= number <= high:
        return None
    return int(number)


def parse_number(value: str | None) -> float | None:
    """The first number in ``value`` (``"3.5"`` -> 3.5, ``"4/6"`` -> 4.0), else ``None``."""
    if value is None:
        return None
    match = _NUMBER.search(value)
    return float(match.group()) if match else None


def parse_id_list(value: str | None, valid: Sequence[int]) -> list[int] | None:
    """Numeric identifiers listed in ``value``: ``"1, 3"`` -> ``[1, 3]``, ``"None"`` -> ``[]``.

    Identifiers outside ``valid`` are dropped; a value with neither a valid identifier nor
    "none" gives ``None`` (unknown).
    """
    if value is None:
        return None
    ids = [int(m) for m in re.findall(r"\b\d+\b", value)]
    kept = [i for i in dict.fromkeys(ids) if i in valid]
    if kept:
        return kept
    if re.search(r"\b(?:none|n/a)\b", value, re.IGNORECASE) or not value.strip(' []()-."'):
        return []
    return None


_INDEXED_SCORE = re.compile(
    r"(?im)\[\s*(?:[a-z]+\s*)?(\d+)\s*\]\s*(?:score\s*[:=]?|[:=])\s*(-?\d+(?:\.\d+)?)"
    r"|^[ \t]*\[\s*(?:[a-z]+\s*)?(\d+)\s*\][ \t]*(-?\d+(?:\.\d+)?)[ \t]*$"
)
_PLAIN_SCORE = re.compile(r"(?im)^\W*(?:\w+\s*\d*\W*)?score\s*[:=]\s*(-?\d+(?:\.\d+)?)")


def parse_indexed_scores(text: str, n: int, low: float, high: float) -> list[float | None]:
    """``n`` scores from lines like ``[2] Score: 3`` or ``[Response 2] Score: 3``.

    Without any ``[i]`` line, ``Score: x`` lines are taken in order. Scores outside
    ``[low, high]`` and items the reply does not mention are ``None``; a reply with no score
    at all raises ``ReplyParseError``.
    """
    cleaned = clean_reply(text)
    scores: list[float | None] = [None] * n
    indexed = list(_INDEXED_SCORE.finditer(cleaned))
    if indexed:
        pairs = [
            (int(m.group(1) or m.group(3)) - 1, float(m.group(2) or m.group(4))) for m in indexed
        ]
    else:
        pairs = [(i, float(m.group(1))) for i, m in enumerate(_PLAIN_SCORE.finditer(cleaned))]
    seen: set[int] = set()
    for index, value in pairs:
        if 0 <= index < n and index not in seen:
            seen.add(index)
            scores[index] = value if low <= value <= high else None
    if not seen:
        raise ReplyParseError(
            f"no '[i] Score: <number>' line found in the reply for the {n} items: {preview(text)!r}"
        )
    return scores


__all__ = [
    "clean_reply",
    "parse_id_list",
    "parse_indexed_scores",
    "parse_int_in_range",
    "parse_number",
]
