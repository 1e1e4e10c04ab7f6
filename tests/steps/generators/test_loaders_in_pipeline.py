"""The loaders inside a real pipeline run (local executor)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from alambic.distiset import Distiset
from alambic.pipeline import Pipeline
from alambic.steps import (
    KeepColumns,
    LoadDataFromDicts,
    LoadDataFromDisk,
    LoadDataFromFileSystem,
)


def test_file_loader_columns_are_known_to_validation(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "n": i}) + "\n" for i in range(5)))
    with Pipeline(name="files") as pipeline:
        load = LoadDataFromFileSystem(
            data_files=str(path),
            output_mappings={"prompt": "instruction"},
            cache_dir=str(tmp_path / "cache"),
            batch_size=2,
        )
        keep = KeepColumns(columns=["instruction"])
        load >> keep
    dataset = pipeline.run(use_cache=False)["default"]["train"]
    assert dataset["instruction"] == [f"p{i}" for i in range(5)]


def test_disk_loader_reads_a_previous_distiset(tmp_path: Path) -> None:
    Distiset.from_rows({"gen": [{"q": "a", "g": "x"}, {"q": "b", "g": "y"}]}).save_to_disk(
        tmp_path / "previous"
    )
    with Pipeline(name="disk") as pipeline:
        load = LoadDataFromDisk(dataset_path=str(tmp_path / "previous"), is_distiset=True)
        keep = KeepColumns(columns=["g", "q"])
        load >> keep
    dataset = pipeline.run(use_cache=False)["default"]["train"]
    assert dataset.to_list() == [{"g": "x", "q": "a"}, {"g": "y", "q": "b"}]


@pytest.mark.slow
def test_hundred_thousand_rows_from_dicts_are_fast() -> None:
    data = [{"instruction": f"q{i}", "n": i} for i in range(100_000)]
    with Pipeline(name="bench") as pipeline:
        load = LoadDataFromDicts(data=data)
        keep = KeepColumns(columns=["instruction"])
        load >> keep
    start = time.perf_counter()
    dataset = pipeline.run(use_cache=False)["default"]["train"]
    elapsed = time.perf_counter() - start
    assert dataset.num_rows == 100_000
    assert dataset["instruction"][-1] == "q99999"
    assert 100_000 / elapsed >= 1_500


def test_a_run_digests_a_large_in_memory_dataset_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run dumps its steps five times (two signatures, the store's YAML and record, the
    dataset card); a large ``data`` is serialized and hashed once per run, not five times,
    and again by the next run."""
    from alambic.steps.generators.data import INLINE_ROWS_LIMIT

    digests: list[str] = []
    original = LoadDataFromDicts._digest

    def counting(self: LoadDataFromDicts) -> str:
        digests.append(original(self))
        return digests[-1]

    monkeypatch.setattr(LoadDataFromDicts, "_digest", counting)
    data = [{"a": i} for i in range(INLINE_ROWS_LIMIT + 500)]
    with Pipeline(name="digest-once") as pipeline:
        LoadDataFromDicts(data=data) >> KeepColumns(columns=["a"])
    first = pipeline.run(use_cache=False, show_progress=False)
    assert len(digests) == 1
    assert first["default"]["train"]["a"] == list(range(INLINE_ROWS_LIMIT + 500))
    pipeline.run(use_cache=False, show_progress=False)
    assert len(digests) == 2
    assert digests[0] == digests[1]


def test_rows_changed_in_place_between_runs_are_run_again() -> None:
    """The run's digest is not kept past the run: the same list, edited in place (same
    length), gives a new signature, so the second run computes the new rows instead of
    returning the first run's stored result."""
    from alambic.steps.generators.data import INLINE_ROWS_LIMIT

    data = [{"a": i} for i in range(INLINE_ROWS_LIMIT + 1)]
    with Pipeline(name="edited-in-place") as pipeline:
        LoadDataFromDicts(data=data) >> KeepColumns(columns=["a"])
    first = pipeline.run(show_progress=False)
    assert first["default"]["train"]["a"][5] == 5
    signature = pipeline.signature
    data[5]["a"] = 999
    assert pipeline.signature != signature
    second = pipeline.run(show_progress=False)
    assert second["default"]["train"]["a"][5] == 999
