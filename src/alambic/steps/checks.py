"""Checks of column values that several steps share, with errors that name the step.

A value of the wrong type is a :class:`~alambic.errors.ColumnTypeError` naming the step, the
column and the value; inside a pipeline a task turns it into a failed row with that reason.
"""

from __future__ import annotations

from typing import Any

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatItem, ChatType

ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


def _label(step: str | None, kind: str | None) -> str:
    return f"Step {step!r}" + (f" ({kind})" if kind else "")


def require_text(step: str | None, column: str, value: Any, *, kind: str | None = None) -> str:
    """``value`` if it is a string, else a clear error."""
    if not isinstance(value, str):
        raise ColumnTypeError(
            f"{_label(step, kind)}: column {column!r} must hold text, got "
            f"{type(value).__name__} {value!r:.80}."
        )
    return value


def check_conversation(step: str | None, value: Any, *, kind: str | None = None) -> ChatType:
    """A copy of a ``messages`` column, checked: role/content dicts ending with the user's."""
    label = _label(step, kind)
    if not isinstance(value, list) or not value:
        raise ColumnTypeError(
            f"{label}: column 'messages' must be a non-empty list of {{'role', 'content'}} "
            f"dicts, got {type(value).__name__} {value!r:.80}."
        )
    checked: ChatType = []
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise ColumnTypeError(
                f"{label}: message {i} is {message!r:.120}; each message needs a 'role' in "
                f"{sorted(ROLES)} and a text 'content'."
            )
        item: ChatItem = {"role": message["role"], "content": message["content"]}
        checked.append(item)
    if checked[-1]["role"] != "user":
        raise ColumnTypeError(
            f"{label}: the last message must be the user's, got role "
            f"{checked[-1]['role']!r}. Drop the trailing assistant turn or append a user message."
        )
    return checked
