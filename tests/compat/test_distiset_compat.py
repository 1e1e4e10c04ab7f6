"""``Distiset`` as distilabel users handle it: plain ``Dataset`` leaves, ``train_test_split``,
distilabel's folder layout (``distiset_configs/``, ``artifacts/``) both ways, and the
``distilabel_metadata`` column name for downstream tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

from alambic.distiset import (
    DISTISET_ARTIFACTS_FOLDER,
    DISTISET_CONFIG_FOLDER,
    PIPELINE_CONFIG_FILENAME,
    PIPELINE_LOG_FILENAME,
    Distiset,
)


@pytest.fixture
def distiset() -> Distiset:
    return Distiset(
        {
            "leaf_step_1": Dataset.from_dict({"a": [1, 2, 3]}),
            "leaf_step_2": Dataset.from_dict({"a": [1, 2, 3, 4], "b": [5, 6, 7, 8]}),
        }
    )


def test_layout_constants_have_distilabels_values() -> None:
    assert (DISTISET_CONFIG_FOLDER, DISTISET_ARTIFACTS_FOLDER) == ("distiset_configs", "artifacts")
    assert (PIPELINE_CONFIG_FILENAME, PIPELINE_LOG_FILENAME) == ("pipeline.yaml", "pipeline.log")


def test_train_test_split_turns_each_leaf_into_train_and_test(distiset: Distiset) -> None:
    split = distiset.train_test_split(train_size=0.5, seed=0)
    assert isinstance(split, Distiset)
    assert isinstance(split["leaf_step_2"], DatasetDict)
    assert {k: v.num_rows for k, v in split["leaf_step_2"].items()} == {"train": 2, "test": 2}
    assert sorted([*split["leaf_step_2"]["train"]["a"], *split["leaf_step_2"]["test"]["a"]]) == [
        1,
        2,
        3,
        4,
    ]


def test_plain_dataset_leaves_save_and_load_as_plain_datasets(
    distiset: Distiset, tmp_path: Path
) -> None:
    out = distiset.save_to_disk(tmp_path / "d", save_card=True)
    loaded = Distiset.load_from_disk(out)
    assert isinstance(loaded["leaf_step_1"], Dataset)
    assert list(loaded["leaf_step_2"]["b"]) == [5, 6, 7, 8]
    assert loaded.num_rows_total() == 7
    assert "leaf_step_2" in (out / "README.md").read_text()


def test_save_with_config_log_and_artifacts_in_distilabels_layout(
    distiset: Distiset, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    log.write_text("step started\n")
    artifacts = tmp_path / "src-artifacts"
    (artifacts / "leaf_step_1" / "plot").mkdir(parents=True)
    (artifacts / "leaf_step_1" / "plot" / "metadata.json").write_text("{}")
    distiset.pipeline_yaml = "pipeline:\n  name: demo\n"
    distiset.log_filename_path = log
    distiset.artifacts_path = artifacts

    out = distiset.save_to_disk(
        tmp_path / "saved", save_card=False, save_pipeline_config=True, save_pipeline_log=True
    )
    configs = out / DISTISET_CONFIG_FOLDER
    assert (configs / "pipeline.yaml").read_text() == "pipeline:\n  name: demo\n"
    assert (configs / "pipeline.log").read_text() == "step started\n"
    assert (out / "artifacts" / "leaf_step_1" / "plot" / "metadata.json").is_file()

    loaded = Distiset.load_from_disk(out)
    assert sorted(loaded) == ["leaf_step_1", "leaf_step_2"]  # config folders are not leaves
    assert loaded.pipeline_yaml == "pipeline:\n  name: demo\n"
    assert loaded.log_filename_path == configs / "pipeline.log"
    assert loaded.artifacts_path == out / "artifacts"


def test_loads_a_folder_in_distilabels_layout(tmp_path: Path) -> None:
    """What distilabel's save_to_disk writes: leaves, distiset_configs/ (YAML, log, card)."""
    root = tmp_path / "from-distilabel"
    DatasetDict({"train": Dataset.from_dict({"generation": ["x", "y"]})}).save_to_disk(
        str(root / "default")
    )
    (root / "distiset_configs").mkdir()
    (root / "distiset_configs" / "pipeline.yaml").write_text("distilabel:\n  version: 1.5.3\n")
    (root / "distiset_configs" / "pipeline.log").write_text("log\n")
    (root / "distiset_configs" / "README.md").write_text("card\n")
    loaded = Distiset.load_from_disk(root)
    assert list(loaded["default"]["train"]["generation"]) == ["x", "y"]
    assert loaded.pipeline_yaml == "distilabel:\n  version: 1.5.3\n"
    assert loaded.artifacts_path is None


def test_storage_options_are_refused_with_the_reason(distiset: Distiset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="local folders only"):
        distiset.save_to_disk(tmp_path / "x", storage_options={"project": "p"})


def test_metadata_column_can_take_distilabels_name(tmp_path: Path) -> None:
    rows = [{"generation": "g", "alambic_metadata": {"raw_output_t": "g"}}]
    distiset = Distiset.from_rows({"t": rows})
    renamed = distiset.with_metadata_column("distilabel_metadata")
    dataset = renamed["default"]["train"]
    assert dataset.column_names == ["generation", "distilabel_metadata"]
    assert dataset[0]["distilabel_metadata"] == {"raw_output_t": "g"}
    out = renamed.save_to_disk(tmp_path / "r")
    saved = json.loads((out / "default" / "train" / "dataset_info.json").read_text())
    assert "distilabel_metadata" in saved["features"]
