from __future__ import annotations

from pathlib import Path

import pytest

from alambic.errors import ColumnTypeError
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts, TruncateTextColumn


def run(step: TruncateTextColumn, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    step.load()
    return next(step.process(rows))


def test_truncates_by_characters() -> None:
    step = TruncateTextColumn(column="text", max_length=5)
    rows = run(step, [{"text": "abcdefgh", "k": 1}, {"text": "abc"}, {"text": None}])
    assert rows == [{"text": "abcde", "k": 1}, {"text": "abc"}, {"text": None}]


def test_rejects_non_text() -> None:
    with pytest.raises(ColumnTypeError, match="'text' must hold text, got int"):
        run(TruncateTextColumn(name="cut", max_length=2), [{"text": 3}])


def test_truncates_by_tokens_with_a_real_tokenizer(tiny_model_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    text = "The quick brown fox jumps over the lazy dog again and again."
    step = TruncateTextColumn(column="body", max_length=4, tokenizer=str(tiny_model_path))
    out = run(step, [{"body": text}, {"body": "Hi"}])[0]["body"]
    assert isinstance(out, str)
    assert len(tokenizer.encode(out, add_special_tokens=False)) <= 4
    assert text.startswith(out)
    assert out != text
    assert run(step, [{"body": "Hi"}])[0]["body"] == "Hi"


def test_in_a_pipeline_with_mappings() -> None:
    with Pipeline(name="truncate") as pipeline:
        load = LoadDataFromDicts(data=[{"doc": "0123456789"}])
        load >> TruncateTextColumn(name="cut", column="doc", max_length=3)
    assert pipeline.run(use_cache=False, show_progress=False)["default"]["train"]["doc"] == ["012"]
