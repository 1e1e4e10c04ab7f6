"""The `alambic` command: runs are listed, shown and deleted; errors are one line."""

from __future__ import annotations

import pytest

from alambic.cli import main
from alambic.llms import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration


def _run_once() -> None:
    with Pipeline(name="cli-demo") as pipeline:
        LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(3)]) >> TextGeneration(
            name="gen", llm=FakeLLM()
        )
    pipeline.run(show_progress=False)


def test_runs_list_show_delete(capsys: pytest.CaptureFixture[str]) -> None:
    _run_once()
    assert main(["runs", "list"]) == 0
    listing = capsys.readouterr().out
    assert "cli-demo\trun 1\tfinished" in listing
    assert "gen=3" in listing
    assert main(["runs", "show", "cli-demo"]) == 0
    assert '"status": "finished"' in capsys.readouterr().out
    assert main(["runs", "delete", "cli-demo"]) == 0
    assert "deleted 1 run(s) of 'cli-demo'" in capsys.readouterr().out
    assert main(["runs", "list"]) == 0
    assert "no stored runs" in capsys.readouterr().out


def test_unknown_pipeline_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "nope" in err
