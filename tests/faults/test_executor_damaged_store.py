"""Issue 11 #1: a resumed run whose committed task batch cannot be read ends with a clear
StoreError naming the file, never a hang. The resumed run is a real subprocess (a hang would
otherwise hang the suite) and the damage is real bytes written into ``store.sqlite``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    from alambic.llms.fake import FakeLLM
    from alambic.pipeline import Pipeline
    from alambic.steps import KeepColumns, LoadDataFromDicts
    from alambic.steps.tasks.text_generation import TextGeneration

    with Pipeline(name="damaged", cache_dir=sys.argv[1]) as p:
        load = LoadDataFromDicts(
            name="load", data=[{"instruction": f"q{i}"} for i in range(60)], batch_size=10
        )
        gen = TextGeneration(name="gen", llm=FakeLLM(), input_batch_size=10)
        keep = KeepColumns(name="keep", columns=["instruction", "generation"])
        load >> gen >> keep
    if sys.argv[2] == "signature":
        print(p.step_signatures()["gen"])
    else:
        rows = p.run(show_progress=False)["default"]["train"]
        print("rows", len(rows))
    """
)


def _run(
    script: Path, cache: Path, what: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALAMBIC_REQUEST_CACHE": "0"}
    return subprocess.run(
        [sys.executable, str(script), str(cache), what],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("step", ["gen", "load"])
def test_a_damaged_committed_batch_fails_fast_with_the_file_named(
    tmp_path: Path, step: str
) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache"
    first = _run(script, cache, "run")
    assert first.returncode == 0, first.stderr
    assert "rows 60" in first.stdout
    (store,) = cache.glob("pipelines/*/store.sqlite")
    with sqlite3.connect(store) as conn:
        sigs = dict(conn.execute("SELECT name, sig FROM steps").fetchall())
        changed = conn.execute(
            "UPDATE units SET data = ? WHERE sig = ? AND seq = 2",
            (b"\\x00 not a batch \\xff" * 4, sigs[step]),
        ).rowcount
    assert changed == 1
    # the leaf's data must be rebuilt, so the resumed run replays the committed batches
    for marker in cache.glob("pipelines/*/data/*/_COMPLETE"):
        marker.unlink()
    try:
        second = _run(script, cache, "run", timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the resumed run hung on a damaged batch instead of failing")
    assert second.returncode != 0
    assert "StoreError" in second.stderr
    assert str(store) in second.stderr
    assert "cannot be read" in second.stderr


def test_a_zero_byte_store_is_recreated_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from alambic.pipeline import Pipeline
    from alambic.pipeline.store import pipeline_dir
    from alambic.steps import KeepColumns, LoadDataFromDicts

    with Pipeline(name="zero", cache_dir=tmp_path) as p:
        LoadDataFromDicts(data=[{"a": 1}]) >> KeepColumns(columns=["a"])
    folder = pipeline_dir(tmp_path, "zero", p.signature())
    folder.mkdir(parents=True)
    (folder / "store.sqlite").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="alambic"):
        rows = p.run(show_progress=False)["default"]["train"]["a"]
    assert rows == [1]
    assert "empty (0-byte) file" in caplog.text
    assert str(folder / "store.sqlite") in caplog.text
