"""The quickstart's code path, on the tiny local model the suite builds."""

from __future__ import annotations

from pathlib import Path

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
