from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from alambic.distiset import Distiset  # noqa: E402
from alambic.errors import AlambicUserError, MappingError  # noqa: E402
from alambic.steps.generators import (  # noqa: E402
    LoadDataFromDisk,
    LoadDataFromFileSystem,
)


def _rows(step: object, offset: int = 0) -> list[list[dict[str, object]]]:
    return [rows for rows, _ in step.process(offset)]  # type: ignore[attr-defined]


def _write_jsonl(path: Path, start: int, stop: int) -> Path:
    path.write_text(
        "".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(start, stop))
    )
    return path


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "hf-cache")


def test_jsonl_glob_in_sorted_order_with_offset(tmp_path: Path, cache: str) -> None:
    _write_jsonl(tmp_path / "b.jsonl", 5, 10)
    _write_jsonl(tmp_path / "a.jsonl", 0, 5)
    step = LoadDataFromFileSystem(
        data_files=str(tmp_path / "*.jsonl"), batch_size=4, cache_dir=cache
    )
    step.load()
    assert step.outputs == ["id", "text"]
    batches = list(step.process())
    assert [[r["id"] for r in rows] for rows, _ in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [last for _, last in batches] == [False, False, True]
    assert [[r["id"] for r in rows] for rows in _rows(step, offset=7)] == [[7, 8, 9]]


def test_csv_parquet_and_json_with_num_examples(tmp_path: Path, cache: str) -> None:
    with open(tmp_path / "d.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["q", "a"])
        writer.writerows([["1+1", "2"], ["2+2", "4"], ["3+3", "6"]])
    step = LoadDataFromFileSystem(data_files=tmp_path / "d.csv", num_examples=2, cache_dir=cache)
    step.load()
    assert _rows(step) == [[{"q": "1+1", "a": 2}, {"q": "2+2", "a": 4}]]

    datasets.Dataset.from_dict({"x": [1, 2, 3]}).to_parquet(str(tmp_path / "p.parquet"))
    step = LoadDataFromFileSystem(
        data_files=[tmp_path / "p.parquet"], output_mappings={"x": "y"}, cache_dir=cache
    )
    step.load()
    assert step.mapped_outputs() == {"y": True}
    assert _rows(step) == [[{"y": 1}, {"y": 2}, {"y": 3}]]

    (tmp_path / "data.txt").write_text(json.dumps([{"k": "v"}]))
    step = LoadDataFromFileSystem(
        data_files=tmp_path / "data.txt", filetype="json", cache_dir=cache
    )
    step.load()
    assert _rows(step) == [[{"k": "v"}]]


def test_file_errors_name_the_path_and_what_exists(tmp_path: Path) -> None:
    (tmp_path / "here.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(FileNotFoundError, match=r"no file .*missing\.jsonl.*here\.jsonl"):
        LoadDataFromFileSystem(data_files=tmp_path / "missing.jsonl").load()
    with pytest.raises(FileNotFoundError, match=r"glob .*\*\.csv.* matches no file.*here\.jsonl"):
        LoadDataFromFileSystem(data_files=str(tmp_path / "*.csv")).load()
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(AlambicUserError, match=r"\['\.xml'\].*filetype="):
        LoadDataFromFileSystem(data_files=tmp_path / "x.xml").load()
    with pytest.raises(AlambicUserError, match="unknown filetype 'xml'"):
        LoadDataFromFileSystem(data_files=tmp_path / "x.xml", filetype="xml").load()
    with pytest.raises(AlambicUserError, match="no data_files"):
        LoadDataFromFileSystem().load()


def test_bad_output_mapping_is_caught_at_load(tmp_path: Path, cache: str) -> None:
    _write_jsonl(tmp_path / "a.jsonl", 0, 2)
    step = LoadDataFromFileSystem(
        data_files=tmp_path / "a.jsonl", output_mappings={"nope": "x"}, cache_dir=cache
    )
    with pytest.raises(MappingError, match="'nope'"):
        step.load()


def test_disk_dataset_dataset_dict_and_distiset(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"n": list(range(6))})
    ds.save_to_disk(str(tmp_path / "plain"))
    step = LoadDataFromDisk(dataset_path=tmp_path / "plain", batch_size=4)
    step.load()
    assert step.outputs == ["n"]
    assert [[r["n"] for r in rows] for rows in _rows(step, offset=1)] == [[1, 2, 3, 4], [5]]

    datasets.DatasetDict({"train": ds, "test": ds.select(range(2))}).save_to_disk(
        str(tmp_path / "dict")
    )
    with pytest.raises(AlambicUserError, match=r"several splits \['train', 'test'\]"):
        LoadDataFromDisk(dataset_path=tmp_path / "dict").load()
    step = LoadDataFromDisk(dataset_path=tmp_path / "dict", split="test")
    step.load()
    assert _rows(step) == [[{"n": 0}, {"n": 1}]]

    Distiset.from_rows({"a": [{"g": "x"}], "b": [{"h": "y"}]}).save_to_disk(tmp_path / "dist")
    with pytest.raises(FileNotFoundError, match="is_distiset=True"):
        LoadDataFromDisk(dataset_path=tmp_path / "dist").load()
    step = LoadDataFromDisk(dataset_path=tmp_path / "dist", is_distiset=True, config="b")
    step.load()
    assert _rows(step) == [[{"h": "y"}]]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LoadDataFromDisk(dataset_path=tmp_path / "nope").load()
