"""Reading step-by-step math solutions: their steps and their final answer."""

from __future__ import annotations

import re
from fractions import Fraction

from alambic.steps.tasks._parsing import ReplyParseError, preview

ANSWER = re.compile(r"the\s+(?:final\s+)?answer\s+is\s*:?\s*(.+)", re.IGNORECASE)
_STEP = re.compile(r"^\s*(?:\*\*)?step\s*\d+\s*(?:\*\*)?\s*[:.)-]", re.IGNORECASE)


def split_steps(text: str) -> list[str]:
    """The steps of one solution, ending with its ``The answer is: ...`` line.

    A step starts with ``Step N:``; lines without that prefix continue the previous step.
    Prose before the first step is dropped. A solution without an answer line (truncated)
    or without a step raises :class:`ReplyParseError`.
    """
    steps: list[str] = []
    answer: str | None = None
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        found = ANSWER.search(line)
        if found and not _STEP.match(line):
            answer = f"The answer is: {clean_answer(found.group(1))}"
            break
        if _STEP.match(line):
            steps.append(line)
        elif steps:
            steps[-1] = f"{steps[-1]} {line}"
        if found:
            answer = f"The answer is: {clean_answer(found.group(1))}"
            break
    if answer is None:
        raise ReplyParseError(f"the solution has no 'The answer is:' line: {preview(text)!r}")
    if not steps:
        raise ReplyParseError(f"the solution has no 'Step N:' line: {preview(text)!r}")
    return [*steps, answer]


def clean_answer(text: str) -> str:
    """The answer text without markup, trailing period or surrounding ``$``."""
    value = text.strip().strip("*").strip().rstrip(".").strip().strip("$").strip()
    value = re.sub(r"^\\boxed\{(.*)\}$", r"\1", value)
    return value.rstrip(".").strip()


def final_answer(text: str) -> str | None:
    """The last ``The answer is: ...`` value in ``text``, or ``None``."""
    found = ANSWER.findall(text)
    return clean_answer(found[-1]) if found else None


def same_answer(a: str | None, b: str | None) -> bool:
    """Whether two answers are equal: as numbers when both are, else as normalised text."""
    if a is None or b is None:
        return False
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def _number(text: str) -> Fraction | None:
    cleaned = text.replace(",", "").replace(" ", "").rstrip("%")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
