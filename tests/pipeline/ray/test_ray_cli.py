"""``alambic run PIPELINE --executor ray``: the command runs a pipeline file on Ray."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("ray", reason='the Ray executor needs Ray: pip install "alambic[ray]"')

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.xdist_group("ray")]

SRC = Path(__file__).resolve().parents[3] / "src"

PIPELINE = textwrap.dedent(
    """
    from alambic.llms import FakeLLM
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts, StepResources
    from alambic.steps.tasks import TextGeneration

    with Pipeline(name="cli-on-ray") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(12)], batch_size=4)
        load >> TextGeneration(
            name="gen", llm=FakeLLM(), input_batch_size=3, resources=StepResources(replicas=2)
        )
    """
)


def test_the_command_runs_a_pipeline_file_on_ray(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE)
    folder = tempfile.mkdtemp(prefix="ar", dir="/tmp")
    (Path(folder) / "ray").mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "ALAMBIC_CACHE_DIR": str(tmp_path / "cache"),
        "RAY_TMPDIR": folder,
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "alambic",
                "run",
                "pipe.py",
                "--executor",
                "ray",
                "--output",
                "out",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows: default=12; failed rows: 0" in proc.stderr
    from alambic.distiset import Distiset

    rows = Distiset.load_from_disk(tmp_path / "out")["default"]["train"]
    assert rows["generation"] == [f"fake reply to: q{i}" for i in range(12)]
