"""Run the real ``alambic`` command in a subprocess, on real files, with a private cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

PIPELINE_PY = textwrap.dedent(
    """
    from alambic.llms import FakeLLM
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration

    with Pipeline(name="cli-demo") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(6)])
        load >> TextGeneration(name="gen", llm=FakeLLM(fail_on=FAIL_ON))
    """
)

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "pipe.py").write_text("FAIL_ON = []\n" + PIPELINE_PY)
    (tmp_path / "failing.py").write_text("FAIL_ON = ['q3']\n" + PIPELINE_PY)
    return tmp_path


@pytest.fixture
def alambic(workdir: Path) -> Run:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "ALAMBIC_CACHE_DIR": str(workdir / "cache"),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "200",
    }

    def run(
        *args: str, check: int | None = 0, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "alambic", *args],
            cwd=workdir,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=240,
        )
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    return run
