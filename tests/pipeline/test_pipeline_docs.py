"""The examples of docs/pipelines.md run as written, in order, and print what they claim."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"


@pytest.mark.slow
def test_pipelines_doc_examples_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    exec(compile("\n".join(textwrap.dedent(b) for b in blocks), str(DOC), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "['fake reply to: What is 2 + 2?', 'fake reply to: Hi']"
    assert printed[1] == "['fake reply to: Hi']"
    assert printed[-2:] == ["['fake reply to: ok', None]", "True"]
    assert (tmp_path / "out" / "answers" / "pipeline.yaml").is_file()
