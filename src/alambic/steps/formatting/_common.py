"""What the formatting steps share: prompt ids and checking conversations."""

from __future__ import annotations

import hashlib
from typing import Any

from alambic.llms.typing import ChatType
from alambic.steps.checks import check_conversation, require_text


def prompt_id(prompt: str) -> str:
    """The SHA-256 hex digest of the prompt's UTF-8 text: the same prompt, the same id.

    Rows built from one prompt share an id, so a dataset can be split by prompt without
    leaking a prompt across train and test.
    """
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


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
