from __future__ import annotations

import pytest

from alambic.errors import ColumnTypeError
from alambic.pipeline import Pipeline
from alambic.steps import ConversationTemplate, LoadDataFromDicts


def test_builds_a_two_turn_conversation() -> None:
    step = ConversationTemplate(name="conv")
    rows = next(step.process([{"instruction": "Hi?", "response": "Hello."}]))
    assert rows[0]["conversation"] == [
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
    ]


def test_non_text_is_an_error_naming_the_column() -> None:
    with pytest.raises(ColumnTypeError, match="'response' must hold text"):
        next(ConversationTemplate(name="conv").process([{"instruction": "Hi", "response": 1}]))


def test_in_a_pipeline_with_input_mappings() -> None:
    with Pipeline(name="conv") as pipeline:
        load = LoadDataFromDicts(data=[{"prompt": "Q", "generation": "A"}])
        load >> ConversationTemplate(
            name="conv", input_mappings={"instruction": "prompt", "response": "generation"}
        )
    row = pipeline.run(use_cache=False, show_progress=False)["default"]["train"][0]
    assert row["conversation"] == [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
    ]
