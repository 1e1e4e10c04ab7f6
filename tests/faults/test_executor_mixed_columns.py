"""Issue 11 #5: a column mixing strings and numbers is never silently rewritten; its strings
come back exactly as given, and the output is the same whatever the batch size (the run
writes real parquet parts and reads them back)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alambic.pipeline import Pipeline
from alambic.steps import KeepColumns, LoadDataFromDicts

ROWS = [{"id": i, "text": f"ok {i}"} for i in range(10)]
ROWS[3] = {"id": 3, "text": 42}


@pytest.mark.parametrize("batch_size", [1, 2, 3, 50])
def test_strings_survive_one_int_row_whatever_the_batch_size(
    tmp_path: Path, batch_size: int, caplog: pytest.LogCaptureFixture
) -> None:
    with Pipeline(name="mixed", cache_dir=tmp_path) as p:
        load = LoadDataFromDicts(data=ROWS, batch_size=batch_size)
        load >> KeepColumns(columns=["id", "text"], input_batch_size=batch_size)
    with caplog.at_level(logging.WARNING, logger="alambic"):
        rows = p.run(show_progress=False)["default"]["train"].to_list()
    texts = [r["text"] for r in rows]
    assert texts[:3] == ["ok 0", "ok 1", "ok 2"]
    assert texts[4:] == [f"ok {i}" for i in range(4, 10)]
    assert texts[3] == "42"
    assert "mixes values of types" in caplog.text
    assert "'text'" in caplog.text
