from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "tasks" / "embeddings.md"


@pytest.mark.slow
def test_docs_example_runs_and_prints_what_it_says(
    minilm_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[-1]
    script = tmp_path / "example.py"
    script.write_text(example)
    runpy.run_path(str(script), run_name="__main__")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines == [
        "12.0 Write a haiku about autumn leaves.",
        "8.0 How can I reset my password?",
        "5.0 What is the capital of Australia?",
    ]
