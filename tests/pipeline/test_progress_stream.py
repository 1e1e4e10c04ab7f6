"""The live table goes where the piped progress lines go: to stderr, never to stdout."""

from __future__ import annotations

import pytest

from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks.text_generation import TextGeneration


def test_the_live_table_is_drawn_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    with Pipeline(name="table-stream") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(5)])
        load >> TextGeneration(name="gen", llm=FakeLLM())
    print("the script's own output")
    rows = pipeline.run(use_cache=False, show_progress=True)["default"]["train"]
    assert rows.num_rows == 5
    out, err = capfd.readouterr()
    assert out == "the script's own output\n"  # stdout (a file, a pipe) stays the script's
    assert "alambic · table-stream" in err  # the table's title
    assert "gen" in err
