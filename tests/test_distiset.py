from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("datasets")

from alambic.distiset import METADATA_COLUMN, Distiset
from alambic.steps.tasks.base import METADATA_COLUMN as TASK_METADATA_COLUMN
from alambic.utils.parquet import ParquetRowWriter

PIPELINE_YAML = "pipeline:\n  name: demo\n  steps:\n  - name: gen\n    api_key: '**********'\n"


def _write(directory: Path, batches: list[list[dict[str, object]]]) -> Path:
    with ParquetRowWriter(directory, rows_per_part=2) as writer:
        for batch in batches:
            writer.write(batch)
    return directory


def test_metadata_column_name_matches_tasks() -> None:
    assert METADATA_COLUMN == TASK_METADATA_COLUMN


def test_single_leaf_is_default_train_with_unified_schema(tmp_path: Path) -> None:
    leaf = _write(
        tmp_path / "gen",
        [
            [{"instruction": "a", "generation": None, METADATA_COLUMN: {"statistics_gen": 1}}],
            [{"instruction": "b", "generation": "x", METADATA_COLUMN: {"error_gen": "boom"}}],
            [{"instruction": "c", "generation": "y", METADATA_COLUMN: {"statistics_gen": 2}}],
        ],
    )
    distiset = Distiset.from_parquet({"gen": leaf}, pipeline_yaml=PIPELINE_YAML)
    assert list(distiset) == ["default"]
    dataset = distiset["default"]["train"]
    assert dataset.num_rows == 3
    assert dataset.column_names == ["instruction", "generation", METADATA_COLUMN]
    assert dataset["generation"] == [None, "x", "y"]
    assert dataset[1][METADATA_COLUMN] == {"statistics_gen": None, "error_gen": "boom"}
    assert distiset.pipeline_yaml == PIPELINE_YAML

    dropped = Distiset.from_parquet({"gen": leaf}, keep_metadata=False)
    assert dropped["default"]["train"].column_names == ["instruction", "generation"]


def test_several_leaves_keep_their_names_and_repr(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", [[{"x": 1}, {"x": 2}]])
    b = _write(tmp_path / "b", [[{"y": "u"}]])
    distiset = Distiset.from_parquet({"judge_a": a, "judge_b": b})
    assert sorted(distiset) == ["judge_a", "judge_b"]
    assert distiset["judge_a"]["train"]["x"] == [1, 2]
    assert distiset["judge_b"]["train"]["y"] == ["u"]
    text = repr(distiset)
    assert "judge_a: DatasetDict({" in text
    assert "train: 2 rows, columns ['x']" in text
    assert "train: 1 rows, columns ['y']" in text


def test_empty_leaf_gives_empty_dataset(tmp_path: Path) -> None:
    distiset = Distiset.from_parquet({"gen": tmp_path / "nothing"})
    assert distiset["default"]["train"].num_rows == 0


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    rows = [
        {"instruction": f"q{i}", "generation": f"a{i}", METADATA_COLUMN: {"raw_output_g": f"a{i}"}}
        for i in range(5)
    ]
    distiset = Distiset.from_rows({"g": rows, "h": rows[:2]}, pipeline_yaml=PIPELINE_YAML)
    out = distiset.save_to_disk(tmp_path / "saved")
    assert (out / "pipeline.yaml").read_text() == PIPELINE_YAML
    assert "configs:" in (out / "README.md").read_text()
    loaded = Distiset.load_from_disk(out)
    assert sorted(loaded) == ["g", "h"]
    assert loaded["g"]["train"].to_list() == rows
    assert loaded["h"]["train"].to_list() == rows[:2]
    assert loaded.pipeline_yaml == PIPELINE_YAML

    bare = distiset.save_to_disk(tmp_path / "bare", save_card=False, save_pipeline_config=False)
    assert sorted(p.name for p in bare.iterdir()) == ["g", "h"]
    assert Distiset.load_from_disk(bare).pipeline_yaml is None


def test_load_from_disk_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Distiset.load_from_disk(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    with pytest.raises(FileNotFoundError, match=r"\['other'\]"):
        Distiset.load_from_disk(tmp_path)


def test_dataset_card_content() -> None:
    rows = [{"instruction": "What is 2+2?", "generation": "4"}]
    distiset = Distiset.from_rows({"gen": rows}, pipeline_yaml=PIPELINE_YAML)
    card = distiset.dataset_card(repo_id="me/math")
    header = card.split("---")[1]
    import yaml

    meta = yaml.safe_load(header)
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "default/train/*"}]}
    ]
    assert meta["size_categories"] == ["n<1K"]
    assert "# Dataset card for me/math" in card
    assert "split `train`: 1 rows, columns `instruction`, `generation`" in card
    assert '"instruction": "What is 2+2?"' in card
    assert 'load_dataset("me/math", "default")' in card
    assert "```yaml\n" + PIPELINE_YAML.rstrip() + "\n```" in card


def test_without_metadata_drops_only_that_column() -> None:
    distiset = Distiset.from_rows({"g": [{"a": 1, METADATA_COLUMN: {"k": "v"}}]})
    assert distiset.without_metadata()["default"]["train"].column_names == ["a"]
    assert distiset["default"]["train"].column_names == ["a", METADATA_COLUMN]


def test_from_parquet_memory_maps_unless_in_memory(tmp_path: Path) -> None:
    batches = [[{"i": i, "t": None if i < 2 else f"t{i}"}] for i in range(5)]
    leaf = _write(tmp_path / "gen", batches)
    mapped = Distiset.from_parquet({"gen": leaf}, keep_metadata=False)["default"]["train"]
    assert [f["filename"] for f in mapped.cache_files] == [str(leaf / "dataset.arrow")]
    in_memory = Distiset.from_parquet({"gen": leaf}, in_memory=True)["default"]["train"]
    assert in_memory.cache_files == []
    assert mapped.to_list() == in_memory.to_list()
    assert mapped["t"] == [None, None, "t2", "t3", "t4"]
