"""Two stored runs of one pipeline (the second changes a reply and fails a row), served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alambic.llms import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration


def _run(prefix: str, fail_on: list[str], rows: int = 120) -> Pipeline:
    with Pipeline(name="viewer-demo") as pipeline:
        data = [{"instruction": f"question {i}", "score": i % 5} for i in range(rows)]
        load = LoadDataFromDicts(data=data)
        load >> TextGeneration(name="gen", llm=FakeLLM(prefix=prefix, fail_on=fail_on))
    pipeline.run(show_progress=False)
    return pipeline


@pytest.fixture
def two_runs() -> tuple[Any, Any]:
    from alambic.viewer import open_target

    _run("answer: ", [])
    _run("better answer: ", ["question 7"])
    from alambic.pipeline.runs import list_runs

    runs = sorted(list_runs(), key=lambda r: r.started_at)  # type: ignore[arg-type, return-value]
    return open_target(runs[1].ref), open_target(runs[0].ref)


@pytest.fixture
def served(two_runs: tuple[Any, Any]) -> Iterator[str]:
    from alambic.viewer import running

    source, other = two_runs
    with running(source, {other.label: other}) as url:
        yield url


def chromium_path() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


ARTIFACTS = Path("/tmp")
