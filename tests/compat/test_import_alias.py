"""``import distilabel...`` resolving to alambic (``alambic.compat``), for old scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import alambic
from alambic import compat

SCRIPT = Path(__file__).parent / "scripts" / "distilabel_script.py"


@pytest.fixture
def alias() -> Iterator[None]:
    assert compat.install_distilabel_alias(force=True)
    yield
    compat.uninstall_distilabel_alias()


@pytest.mark.usefixtures("alias")
def test_distilabel_imports_are_alambics_objects() -> None:
    from distilabel.constants import DISTILABEL_METADATA_KEY
    from distilabel.llms import LLM, AsyncLLM
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps.columns.utils import merge_distilabel_metadata
    from distilabel.steps.tasks import Task, TextGeneration
    from distilabel.steps.tasks.evol_instruct.base import EvolInstruct
    from distilabel.steps.tasks.typing import ChatType

    import alambic.llms as llms
    import alambic.steps.tasks as tasks
    from alambic.pipeline import Pipeline as RealPipeline
    from alambic.steps.columns import merge_alambic_metadata

    assert Pipeline is RealPipeline
    assert (Task, TextGeneration) == (tasks.Task, tasks.TextGeneration)
    assert (LLM, AsyncLLM, OpenAILLM) == (llms.LLM, llms.AsyncLLM, llms.OpenAILLM)
    assert EvolInstruct is tasks.EvolInstruct
    assert merge_distilabel_metadata is merge_alambic_metadata
    assert DISTILABEL_METADATA_KEY == "alambic_metadata"
    assert ChatType is not None


@pytest.mark.usefixtures("alias")
def test_a_missing_name_says_where_to_look() -> None:
    with pytest.raises(ImportError, match="NoSuchTask"):
        from distilabel.steps.tasks import NoSuchTask  # type: ignore[attr-defined]  # noqa: F401
    with pytest.raises(ModuleNotFoundError):
        import distilabel.no_such_module  # noqa: F401


def test_resolve_uses_the_longest_renamed_prefix() -> None:
    assert compat.resolve("distilabel.models.llms.openai") == "alambic.llms.openai"
    assert compat.resolve("distilabel.models") == "alambic.llms"
    assert compat.resolve("distilabel.steps.tasks") == "alambic.steps.tasks"


def test_uninstall_forgets_the_alias() -> None:
    compat.install_distilabel_alias(force=True)
    import distilabel

    compat.uninstall_distilabel_alias()
    assert "distilabel" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        import distilabel  # noqa: F401


@pytest.mark.slow
def test_an_unchanged_distilabel_script_runs_with_python_m_alambic_compat(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(alambic.__file__).resolve().parents[1]),
        "ALAMBIC_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "alambic.compat", str(SCRIPT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == (
        "['ECHO: HI', 'ECHO: BYE'] [8, 9] "
        "['raw_input_shout_0', 'raw_output_shout_0', 'statistics_shout_0']"
    )
