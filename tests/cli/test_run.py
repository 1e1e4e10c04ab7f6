"""`alambic run`: Python, YAML, JSON and Distiset files; overrides; exit status; the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

Run = Any


def test_run_a_python_file_saves_the_dataset_and_prints_progress_when_piped(
    alambic: Run, workdir: Path
) -> None:
    proc = alambic("run", "pipe.py", "--output", "out", ALAMBIC_PROGRESS_INTERVAL="0.05")
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[cli-demo] ")]
    assert any("gen: 6 rows" in line for line in progress[:-1])  # the last progress line
    assert progress[-1].startswith("[cli-demo] run summary:")  # then the summary, at the end
    assert "gen: 6 rows in, 6 out" in proc.stderr
    assert "rows: default=6; failed rows: 0" in proc.stderr
    assert "dataset saved to out/" in proc.stderr
    from alambic.distiset import Distiset

    distiset = Distiset.load_from_disk(workdir / "out")
    assert distiset["default"]["train"]["generation"][0] == "fake reply to: q0"


@pytest.mark.slow
def test_yaml_json_and_distiset_folder_run_the_same_definition(alambic: Run, workdir: Path) -> None:
    alambic("run", "pipe.py", "--output", "out")
    from alambic.pipeline import Pipeline

    pipeline = Pipeline.from_yaml(workdir / "out")
    pipeline.save(workdir / "p.yaml")
    pipeline.save(workdir / "p.json")
    for spec in ("p.yaml", "p.json", "out"):
        alambic("run", spec)
    listing = alambic("runs", "list").stdout.splitlines()
    rows = [line.split("\t") for line in listing[1:] if line]
    assert len({r[1] for r in rows}) == 1  # one definition, resumed by every file form
    assert [r[2] for r in rows] == ["1", "2", "3", "4"]
    assert all(r[5] == "load_data_from_dicts_0=0, gen=0" for r in rows[1:])  # all resumed


def test_param_overrides_are_typed_and_checked(alambic: Run, workdir: Path) -> None:
    proc = alambic("run", "pipe.py", "-p", "gen.input_bach_size=2", check=1)
    assert "did you mean 'input_batch_size'" in proc.stderr.lower()
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    proc = alambic("run", "pipe.py", "-p", "ge.input_batch_size=2", check=1)
    assert "no step 'ge'. Did you mean 'gen'?" in proc.stderr
    proc = alambic("run", "pipe.py", "-p", "gen.input_batch_size=lots", check=1)
    assert "Invalid value 'lots'" in proc.stderr
    alambic("run", "pipe.py", "-p", "gen.llm.generation_kwargs.temperature=0.5", "--output", "o")
    from alambic.pipeline import Pipeline

    loaded = Pipeline.from_yaml(workdir / "o")
    assert loaded.get_step("gen").llm.generation_kwargs == {"temperature": 0.5}  # type: ignore[attr-defined]


def test_failed_rows_exit_3_unless_allowed(alambic: Run) -> None:
    proc = alambic("run", "failing.py", check=3)
    assert "1 row(s) failed" in proc.stderr
    assert "--allow-failures" in proc.stderr
    proc = alambic("run", "failing.py", "--allow-failures")
    assert "failed rows: 1" in proc.stderr


def test_a_bad_progress_interval_is_named(alambic: Run) -> None:
    proc = alambic("run", "pipe.py", check=1, ALAMBIC_PROGRESS_INTERVAL="soon")
    assert "ALAMBIC_PROGRESS_INTERVAL='soon'" in proc.stderr


def test_retry_failed_reaches_the_executor(alambic: Run) -> None:
    import inspect

    from alambic.pipeline import Pipeline

    alambic("run", "failing.py", "--allow-failures")
    if "retry_failed" in inspect.signature(Pipeline.run).parameters:
        proc = alambic("run", "failing.py", "--keep-failed", "--allow-failures")
        assert "failed rows: 1" in proc.stderr
    else:
        proc = alambic("run", "failing.py", "--keep-failed", check=1)
        assert "takes no retry_failed" in proc.stderr


def test_dry_run_and_executor(alambic: Run) -> None:
    proc = alambic("run", "pipe.py", "--dry-run")
    assert "rows: default=1" in proc.stderr
    proc = alambic("run", "pipe.py", "--executor", "spark", check=1)
    assert "--executor 'spark' is not one of local, ray" in proc.stderr


def test_yaml_with_a_foreign_module_needs_allow_module(alambic: Run, workdir: Path) -> None:
    (workdir / "my_steps.py").write_text(
        "from alambic.steps import Step\n"
        "class Upper(Step):\n"
        "    @property\n"
        "    def inputs(self): return ['instruction']\n"
        "    @property\n"
        "    def outputs(self): return ['instruction']\n"
        "    def process(self, inputs):\n"
        "        yield [{**r, 'instruction': r['instruction'].upper()} for r in inputs]\n"
    )
    (workdir / "custom.py").write_text(
        "from alambic.pipeline import Pipeline\n"
        "from alambic.steps import LoadDataFromDicts\n"
        "from my_steps import Upper\n"
        "def build_pipeline():\n"
        "    with Pipeline(name='custom') as p:\n"
        "        LoadDataFromDicts(data=[{'instruction': 'hi'}]) >> Upper(name='up')\n"
        "    return p\n"
    )
    alambic("run", "custom.py", "--output", "out")
    proc = alambic("run", "out/pipeline.yaml", check=1)
    assert "--allow-module my_steps" in proc.stderr
    proc = alambic("run", "out/pipeline.yaml", "--allow-module", "my_steps", "--output", "again")
    assert "rows: default=1" in proc.stderr


def test_push_to_hub_offline_is_one_clear_message(alambic: Run) -> None:
    proc = alambic("run", "pipe.py", "--push-to-hub", "me/data", check=1)
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1
    assert "Pushing the dataset to 'me/data'" in error[0]
    assert "--output DIR" in error[0]


def test_push_to_an_unreachable_hub_names_the_fix(alambic: Run) -> None:
    from alambic.testing.processes import free_port

    proc = alambic(
        "run",
        "pipe.py",
        "--push-to-hub",
        "me/data",
        check=1,
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT=f"http://127.0.0.1:{free_port()}",
        HF_TOKEN="hf_test",
    )
    assert "Traceback" not in proc.stderr
    assert "the Hub cannot be reached" in proc.stderr
    assert "HF_ENDPOINT" in proc.stderr


@pytest.mark.slow
def test_push_to_the_local_hub_server(alambic: Run) -> None:
    from alambic.testing.hub_server import HubTestServer

    with HubTestServer() as hub:
        proc = alambic(
            "run",
            "pipe.py",
            "--push-to-hub",
            "me/data",
            HF_HUB_OFFLINE="0",
            HF_ENDPOINT=hub.url,
            HF_TOKEN="hf_test",
        )
        assert "pushed to me/data" in proc.stderr
        assert any(name.endswith(".parquet") for name in hub.list_files("me/data"))


def test_an_unreachable_provider_is_one_error_without_tracebacks(
    alambic: Run, workdir: Path
) -> None:
    from alambic.testing.processes import free_port

    (workdir / "api.py").write_text(
        "from alambic.llms import OpenAILLM\n"
        "from alambic.pipeline import Pipeline\n"
        "from alambic.steps import LoadDataFromDicts\n"
        "from alambic.steps.tasks import TextGeneration\n"
        "with Pipeline(name='api') as pipeline:\n"
        "    load = LoadDataFromDicts(data=[{'instruction': f'q{i}'} for i in range(12)])\n"
        f"    llm = OpenAILLM(model='m', base_url='http://127.0.0.1:{free_port()}/v1')\n"
        "    load >> TextGeneration(name='gen', llm=llm, input_batch_size=4)\n"
    )
    proc = alambic("run", "api.py", check=1)
    assert "Traceback" not in proc.stderr
    assert "never retrieved" not in proc.stderr  # the other batches' copies of the error
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert "nothing accepts connections at http://127.0.0.1:" in error
    assert "fix base_url=" in error
