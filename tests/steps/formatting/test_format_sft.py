"""SFT formatting: prompt, prompt_id (SHA-256 of the prompt), messages."""

from __future__ import annotations

import hashlib

import pytest

from alambic.errors import ColumnTypeError
from alambic.steps.formatting import FormatChatGenerationSFT, FormatTextGenerationSFT


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_text_sft_builds_messages_and_keeps_columns() -> None:
    step = FormatTextGenerationSFT()
    rows = next(
        step.process(
            [
                {"instruction": "Say hi", "generation": "Hi!", "extra": 1},
                {"instruction": "Say hi", "generation": "Hello", "system_prompt": "Be brief."},
            ]
        )
    )
    assert rows[0] == {
        "instruction": "Say hi",
        "generation": "Hi!",
        "extra": 1,
        "prompt": "Say hi",
        "prompt_id": sha("Say hi"),
        "messages": [
            {"role": "user", "content": "Say hi"},
            {"role": "assistant", "content": "Hi!"},
        ],
    }
    assert rows[1]["prompt_id"] == rows[0]["prompt_id"]
    assert rows[1]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_text_sft_failed_generation_gives_none_messages() -> None:
    rows = next(FormatTextGenerationSFT().process([{"instruction": "x", "generation": None}]))
    assert rows[0]["messages"] is None
    assert rows[0]["prompt_id"] == sha("x")


def test_text_sft_rejects_list_generation() -> None:
    with pytest.raises(ColumnTypeError, match="'generation' must hold text or None"):
        next(FormatTextGenerationSFT().process([{"instruction": "x", "generation": ["a"]}]))


def test_chat_sft_appends_the_generation() -> None:
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tell a joke"},
    ]
    rows = next(
        FormatChatGenerationSFT().process([{"messages": conversation, "generation": "No."}])
    )
    assert rows[0]["prompt"] == "Tell a joke"
    assert rows[0]["prompt_id"] == sha("Tell a joke")
    assert rows[0]["messages"] == [*conversation, {"role": "assistant", "content": "No."}]
    assert FormatChatGenerationSFT().get_inputs() == {"messages": True, "generation": True}


def test_chat_sft_requires_a_final_user_turn() -> None:
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    with pytest.raises(ColumnTypeError, match="must be the user's"):
        next(FormatChatGenerationSFT().process([{"messages": conversation, "generation": "x"}]))
