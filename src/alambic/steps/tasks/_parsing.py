"""Reading structured answers out of free LLM text.

LLMs wrap the JSON or the score they were asked for in prose, markdown fences, numbered lists
or bold labels, and sometimes stop half-way. Every helper here either returns what it found or
raises :class:`ReplyParseError` (a ``ValueError``) whose message says what was expected and
shows the start of the reply; a task's ``format_output`` can let it propagate, and the Task
base turns it into a failed row with the message as the reason.

Stable API (used by generation and judge tasks):

- :func:`strip_fences` - the inside of the first markdown code fence, or the text itself.
- :func:`extract_json` - the first JSON value (object or array) found in the text.
- :func:`extract_json_object` - the same, but it must be an object (a ``dict``).
- :func:`parse_score` - a number within ``[low, high]`` ("Score: 4", "4/5", "**Rating**: 4").
- :func:`parse_sections` - ``{label: text}`` from ``Label: ...`` / ``## Label`` sections.
- :func:`parse_list_items` - the items of a numbered or bulleted list (or plain lines).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ReplyParseError",
    "extract_json",
    "extract_json_object",
    "parse_list_items",
    "parse_score",
    "parse_sections",
    "preview",
    "strip_fences",
]


class ReplyParseError(ValueError):
    """An LLM reply does not hold what the task asked for."""


def preview(text: str, limit: int = 200) -> str:
    """The start of ``text`` for an error message, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def strip_fences(text: str) -> str:
    """The content of the first fenced code block (closed or not), else ``text`` stripped."""
    match = _FENCE.search(text)
    if match is None:
        return text.strip()
    return match.group(2).strip()


_DECODER = json.JSONDecoder()


def _json_candidates(text: str) -> list[str]:
    blocks = [m.group(2) for m in _FENCE.finditer(text)]
    return [*blocks, text]


def extract_json(text: str) -> Any:
    """The first complete JSON object or array in ``text``.

    Looks inside markdown fences first, then anywhere in the text, so ``"Sure! ```json
    {...}``` Hope it helps"`` and ``"Here: {...}"`` both work. A truncated or missing value
    raises :class:`ReplyParseError`.
    """
    for candidate in _json_candidates(text):
        for start, char in enumerate(candidate):
            if char not in "{[":
                continue
            try:
                value, _ = _DECODER.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            return value
    if re.search(r"[{\[]", text):
        raise ReplyParseError(
            f"the reply has no complete JSON value (truncated or malformed?): {preview(text)!r}"
        )
    raise ReplyParseError(f"the reply holds no JSON object or array: {preview(text)!r}")


def extract_json_object(text: str) -> dict[str, Any]:
    """Like :func:`extract_json`, but the value must be a JSON object.

    When the first JSON value is an array, the first object found after it is tried too.
    """
    for candidate in _json_candidates(text):
        for start, char in enumerate(candidate):
            if char != "{":
                continue
            try:
                value, _ = _DECODER.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    if "{" in text:
        raise ReplyParseError(
            f"the reply has no complete JSON object (truncated or malformed?): {preview(text)!r}"
        )
    raise ReplyParseError(f"the reply holds no JSON object: {preview(text)!r}")


_NUMBER = r"(-?\d+(?:\.\d+)?)"


def parse_score(
    text: str,
    *,
    low: float = 1,
    high: float = 5,
    labels: Sequence[str] = ("score", "rating"),
    integer: bool = True,
) -> float:
    """The score an LLM gave, within ``[low, high]``.

    Looks, in order, for a labelled score (``Score: 4``, ``**Rating**: 4/5``, ``"score": 4``),
    then a fraction ``4/5`` or ``4 out of 5``, then a reply that is only a number; when a form
    occurs several times the last one wins (models reason first and conclude last). A range
    such as ``Score: 1-5`` (an echoed instruction) is not a score. A score outside the range,
    or a text with none of these forms, raises :class:`ReplyParseError`. With ``integer`` the
    result is an ``int`` and ``4.5`` is rejected.
    """
    label = "|".join(re.escape(x) for x in labels)
    not_range = r"(?!\s*[-–]\s*\d)"
    patterns = [
        rf"(?i)\b(?:{label})\b[\"'*_\s]*[:=\-]?[\"'*_\s]*{_NUMBER}{not_range}",
        rf"(?i){_NUMBER}\s*(?:/|out of)\s*{re.escape(_fmt(high))}\b",
        rf"^\W*{_NUMBER}\W*$",
    ]
    for pattern in patterns:
        matches = list(re.finditer(pattern, text.strip()))
        if not matches:
            continue
        value = float(matches[-1].group(1))
        if not low <= value <= high:
            raise ReplyParseError(
                f"the reply gives the score {_fmt(value)}, outside the range "
                f"{_fmt(low)}-{_fmt(high)}: {preview(text)!r}"
            )
        if integer and not value.is_integer():
            raise ReplyParseError(
                f"the reply gives the score {_fmt(value)}, not a whole number between "
                f"{_fmt(low)} and {_fmt(high)}: {preview(text)!r}"
            )
        return int(value) if integer else value
    raise ReplyParseError(
        f"no score between {_fmt(low)} and {_fmt(high)} found in the reply (expected e.g. "
        f"'Score: {_fmt(high)}'): {preview(text)!r}"
    )


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_sections(text: str, labels: Sequence[str]) -> dict[str, str]:
    """Split a reply into the sections that start with one of ``labels``.

    A section starts with its label at the start of a line, in any of the usual dresses:
    ``Label:``, ``**Label:**``, ``**Label**:``, ``## Label``, ``[Label]``; matching ignores
    case, and ``-``/``_``/spaces in labels are interchangeable. The text of a section runs
    to the next label. Labels that do not occur are missing from the result (callers decide
    which are required).
    """
    alternatives = "|".join(
        re.sub(r"(?:\\[ _-])+", r"[ _-]+", re.escape(label)) for label in labels
    )
    header = re.compile(
        rf"(?im)^[ \t>]*(?:#+[ \t]*)?[*_\[]*[ \t]*({alternatives})[ \t]*[*_\]]*[ \t]*[:.\-]?[ \t]*[*_]*[ \t]*"
    )
    matches = list(header.finditer(text))
    sections: dict[str, str] = {}
    canonical = {_norm(label): label for label in labels}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        key = canonical[_norm(match.group(1))]
        if key not in sections and body:
            sections[key] = body
    return sections


def _norm(label: str) -> str:
    return re.sub(r"[ _-]+", " ", label.strip().lower())


_ITEM = re.compile(r"^\s*(?:\d+\s*[.):\]]|[-*•+]|\(\d+\))\s+")


def parse_list_items(text: str) -> list[str]:
    """The items of a numbered or bulleted list; plain non-empty lines when there is no list.

    Lines that are not items (an intro such as "Here are five questions:") are dropped when
    the text has list items; a markdown fence around the list is removed first.
    """
    body = strip_fences(text)
    lines = [line for line in body.splitlines() if line.strip()]
    items = [line for line in lines if _ITEM.match(line)]
    chosen = items if items else lines
    cleaned = [re.sub(r"\*\*(.+?)\*\*", r"\1", _ITEM.sub("", line)).strip() for line in chosen]
    return [item for item in cleaned if item]
