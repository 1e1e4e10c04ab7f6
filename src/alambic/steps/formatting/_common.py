"""What the formatting steps share: prompt ids and checking conversations."""

from __future__ import annotations

import hashlib
from typing import Any

from alambic.errors import ColumnTypeError
from alambic.llms.typing import ChatItem, ChatType

_ROLES = {"system", "user", "assistant", "tool", "developer"}


def prompt_id(prompt: str) -> str:
    """The SHA-256 hex digest of the prompt's UTF-8 text: the same prompt, the same id.

    Rows built from one prompt share an id, so a dataset can be split by prompt without
    leaking a prompt across train and test.
    """
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def require_text(step: str, column: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ColumnTypeError(
            f"Step {step!r}: column {column!r} must hold text, got {type(value).__name__} "
            f"{value!r:.80}."
        )
    return value


def check_conversation(step: str, value: Any) -> ChatType:
    """A copy of a ``messages`` column, checked: role/content dicts ending with the user."""
    if not isinstance(value, list) or not value:
        raise ColumnTypeError(
            f"Step {step!r}: column 'messages' must be a non-empty list of {{'role', "
            f"'content'}} dicts, got {type(value).__name__} {value!r:.80}."
        )
    checked: ChatType = []
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or message.get("role") not in _ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise ColumnTypeError(
                f"Step {step!r}: message {i} is {message!r:.120}; each message needs a 'role' "
                f"in {sorted(_ROLES)} and a text 'content'."
            )
        item: ChatItem = {"role": message["role"], "content": message["content"]}
        checked.append(item)
    if checked[-1]["role"] != "user":
        raise ColumnTypeError(
            f"Step {step!r}: the last message of 'messages' must be the user's (the prompt the "
            f"generation answers), got role {checked[-1]['role']!r}."
        )
    return checked


def text_conversation(step: str, row: dict[str, Any]) -> tuple[str, ChatType]:
    """(prompt, conversation up to the prompt) for an instruction row (system prompt optional)."""
    instruction = require_text(step, "instruction", row.get("instruction"))
    messages: ChatType = []
    system = row.get("system_prompt")
    if system is not None:
        messages.append({"role": "system", "content": require_text(step, "system_prompt", system)})
    messages.append({"role": "user", "content": instruction})
    return instruction, messages


def chat_conversation(step: str, row: dict[str, Any]) -> tuple[str, ChatType]:
    """(prompt, conversation) for a ``messages`` row: the prompt is the last user message."""
    messages = check_conversation(step, row.get("messages"))
    return messages[-1]["content"], messages
