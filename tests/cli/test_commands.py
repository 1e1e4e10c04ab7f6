"""`alambic info`, `runs list|show|rm`, `quickstart --help`, and each command's own --help."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

Run = Any


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["run"], "--allow-failures"),
        (["info"], "--format"),
        (["runs", "list"], "--json"),
        (["runs", "show"], "--yaml"),
        (["runs", "rm"], "--all"),
        (["view"], "--diff"),
        (["quickstart"], "--base-url"),
    ],
)
def test_each_help_shows_its_own_options(alambic: Run, command: list[str], option: str) -> None:
    out = alambic(*command, "--help").stdout
    assert f"Usage: alambic {' '.join(command)}" in out
    assert option in out
    assert "python -m alambic.quickstart" not in out


def test_version(alambic: Run) -> None:
    from alambic import __version__

    assert alambic("--version").stdout.strip() == f"alambic {__version__}"


def test_no_arguments_prints_help(alambic: Run) -> None:
    for args in ([], ["runs"]):
        proc = alambic(*args, check=None)
        assert "Usage: alambic" in proc.stdout + proc.stderr


def test_info_shows_dag_mermaid_columns_parameters_and_llm(alambic: Run) -> None:
    out = alambic("info", "pipe.py").stdout
    assert "load_data_from_dicts_0 -> gen" in out
    assert "graph TD" in out
    assert "load_data_from_dicts_0 --> gen" in out
    assert "inputs:  instruction, system_prompt (optional)" in out
    assert "outputs: generation, model_name" in out
    assert "input_batch_size = 50  How many rows each call to process() receives." in out
    assert "llm:     FakeLLM model=fake-model max_concurrency=64" in out
    mermaid = alambic("info", "pipe.py", "--format", "mermaid").stdout
    assert mermaid.splitlines()[0] == "graph TD"
    import json

    data = json.loads(alambic("info", "pipe.py", "--format", "json").stdout)
    assert [s["name"] for s in data["steps"]] == ["load_data_from_dicts_0", "gen"]


def test_runs_list_show_rm(alambic: Run, workdir: Path) -> None:
    assert alambic("runs", "list").stdout.strip() == "no stored runs"
    alambic("run", "pipe.py")
    alambic("run", "failing.py", "--allow-failures")
    lines = alambic("runs", "list").stdout.splitlines()
    assert lines[0].split("\t") == [
        "pipeline",
        "definition",
        "run",
        "status",
        "started",
        "rows this run",
        "failed rows",
        "cost",  # issue 14's last column
    ]
    first, second = (line.split("\t") for line in lines[1:3])
    assert first[0] == second[0] == "cli-demo"
    assert first[1] != second[1]  # two definitions of one pipeline name, told apart
    assert first[2:4] == ["1", "finished"]
    assert second[3] == "finished with 1 failed"
    assert first[5] == "load_data_from_dicts_0=6, gen=6"
    assert (first[6], second[6]) == ("0", "1")
    assert (first[7], second[7]) == ("$0", "$0")  # FakeLLM runs in the process: free
    ref = f"{second[1]}/{second[2]}"
    shown = alambic("runs", "show", ref).stdout
    assert f"run:         1  (ref {ref})" in shown
    assert "failed rows: 1" in shown
    assert "name: cli-demo" in alambic("runs", "show", second[1], "--yaml").stdout
    proc = alambic("runs", "show", "nope", check=1)
    assert proc.stderr.startswith("error: ")
    assert "nope" in proc.stderr
    assert "deleted 1 run(s)" in alambic("runs", "rm", ref).stdout
    assert len(alambic("runs", "list").stdout.splitlines()) == 2
    proc = alambic("runs", "rm", check=1)
    assert "--all" in proc.stderr
    alambic("runs", "rm", "--all")
    assert alambic("runs", "list").stdout.strip() == "no stored runs"


@pytest.mark.slow
def test_view_serves_a_distiset_folder_on_loopback(alambic: Run, workdir: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from alambic.testing.processes import free_port

    src = Path(__file__).resolve().parents[2] / "src"

    alambic("run", "failing.py", "--output", "out", "--allow-failures")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "alambic", "view", "out", "--port", str(port)],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(src), "ALAMBIC_CACHE_DIR": str(workdir / "cache")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        for _ in range(100):
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=5).json()
                break
            except httpx.TransportError:
                import time

                time.sleep(0.1)
        assert info["steps"] == [{"name": "default", "rows": 6}]
        failed = httpx.get(
            f"http://127.0.0.1:{port}/api/rows", params={"failure": "any"}, timeout=10
        ).json()
        assert [r["values"]["instruction"] for r in failed["rows"]] == ["q3"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def test_runs_list_on_a_terminal_is_a_table(alambic: Run, workdir: Path) -> None:
    import os
    import subprocess
    import sys

    alambic("run", "pipe.py")
    src = Path(__file__).resolve().parents[2] / "src"
    master, slave = os.openpty()
    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "ALAMBIC_CACHE_DIR": str(workdir / "cache"),
        "COLUMNS": "160",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "alambic", "runs", "list"],
        cwd=workdir,
        env=env,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    import re

    out = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode(errors="replace"))
    assert "┃ pipeline" in out  # rich's table header
    assert "cli-demo" in out
    assert "load_data_from_dicts_0=6, gen=6" in out
