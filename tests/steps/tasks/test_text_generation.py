"""TextGeneration and ChatGeneration."""

from __future__ import annotations

import pytest

from alambic.errors import ColumnTypeError, TemplateError
from alambic.llms import FakeLLM
from alambic.steps.tasks import ChatGeneration, TextGeneration


def test_default_column_is_instruction() -> None:
    task = TextGeneration(name="tg", llm=FakeLLM())
    task.load()
    assert task.get_inputs() == {"instruction": True, "system_prompt": False}
    assert task.format_input({"instruction": "hi"}) == [{"role": "user", "content": "hi"}]


def test_template_with_columns() -> None:
    task = TextGeneration(
        name="tg",
        llm=FakeLLM(),
        template="Translate to {{ lang }}: {{ text }}",
        columns=["text", "lang"],
    )
    task.load()
    assert task.format_input({"text": "hola", "lang": "English"}) == [
        {"role": "user", "content": "Translate to English: hola"}
    ]


def test_template_placeholder_not_in_columns_fails_at_load() -> None:
    task = TextGeneration(
        name="tg", llm=FakeLLM(), template="{{ text }} {{ lang }}", columns=["text"]
    )
    with pytest.raises(TemplateError, match=r"uses \['lang'\] but columns=\['text'\]"):
        task.load()


def test_system_prompt_attribute_and_row_column_the_row_wins() -> None:
    task = TextGeneration(name="tg", llm=FakeLLM(), system_prompt="be brief")
    task.load()
    assert task.format_input({"instruction": "q"})[0] == {"role": "system", "content": "be brief"}
    assert task.format_input({"instruction": "q", "system_prompt": "be long"})[0] == {
        "role": "system",
        "content": "be long",
    }


def test_non_string_instruction_is_a_clear_error() -> None:
    task = TextGeneration(name="tg", llm=FakeLLM())
    task.load()
    with pytest.raises(
        ColumnTypeError,
        match=r"'tg' \(TextGeneration\): column 'instruction' must hold text, got int 42",
    ):
        next(task.process([{"instruction": 42}]))


def test_generation_row() -> None:
    task = TextGeneration(name="tg", llm=FakeLLM(model="m"), add_raw_input=False)
    task.load()
    assert next(task.process([{"instruction": "q"}])) == [
        {
            "instruction": "q",
            "generation": "fake reply to: q",
            "alambic_metadata": {
                "raw_output_tg": "fake reply to: q",
                "statistics_tg": {"input_tokens": 1, "output_tokens": 4},
            },
            "model_name": "m",
        }
    ]


def test_chat_generation_sends_the_conversation() -> None:
    llm = FakeLLM()
    task = ChatGeneration(name="chat", llm=llm)
    task.load()
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
    ]
    [row] = next(task.process([{"messages": messages}]))
    assert row["generation"] == "fake reply to: u2"
    assert llm.history[0]["messages"] == messages


def test_chat_generation_requires_the_last_message_to_be_the_users() -> None:
    task = ChatGeneration(name="chat", llm=FakeLLM())
    task.load()
    with pytest.raises(
        ColumnTypeError, match="last message must be the user's, got role 'assistant'"
    ):
        task.format_input(
            {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}
        )
    with pytest.raises(ColumnTypeError, match="message 0"):
        task.format_input({"messages": [{"role": "robot", "content": "u"}]})
