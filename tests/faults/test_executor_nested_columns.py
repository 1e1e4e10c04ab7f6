"""What lists and dicts hold keeps one kind per column too: an odd nested value refuses its
row instead of turning the whole column into JSON text (the run writes real parquet parts and
reads them back through ``datasets``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import METADATA_COLUMN
from alambic.pipeline import Pipeline
from alambic.pipeline.executor.column_types import MIXED, describe, merge_shapes, shape_of
from alambic.steps import LoadDataFromDicts


def run(tmp_path: Path, data: list[dict[str, Any]], batch_size: int) -> Any:
    with Pipeline(name=f"nested-{batch_size}", cache_dir=tmp_path, enable_metadata=True) as p:
        LoadDataFromDicts(name="load", data=data, batch_size=batch_size)
    return p.run(show_progress=False, use_cache=False)["default"]["train"]


def refusals(dataset: Any) -> dict[int, str]:
    return {
        row["i"]: row[METADATA_COLUMN]["error_load"]["message"]
        for row in dataset
        if (row[METADATA_COLUMN] or {}).get("error_load")
    }


@pytest.mark.parametrize("batch_size", [1, 7, 50])
def test_an_odd_item_kind_in_a_list_column_refuses_that_row_only(
    tmp_path: Path, batch_size: int, caplog: pytest.LogCaptureFixture
) -> None:
    data: list[dict[str, Any]] = [{"i": i, "tags": [i, i + 1]} for i in range(20)]
    data[9] = {"i": 9, "tags": ["nine"]}
    data[12] = {"i": 12, "tags": [1.5]}  # a float among ints: one number kind, as Arrow does
    data[14] = {"i": 14, "tags": []}  # nothing to compare
    with caplog.at_level(logging.WARNING, logger="alambic"):
        dataset = run(tmp_path, data, batch_size)
    assert str(dataset.features["tags"]) == "List(Value('float64'))"  # not JSON text
    tags = dataset["tags"]
    assert tags[0] == [0, 1]
    assert tags[9] is None
    assert tags[12] == [1.5]
    assert tags[14] == []
    assert list(refusals(dataset)) == [9]
    assert "holds ['nine'] (list of str)" in refusals(dataset)[9]
    assert "made it a list of number column" in refusals(dataset)[9]
    assert "mixes values of types" not in caplog.text


def test_a_dict_key_keeps_its_kind_and_keys_may_come_and_go(tmp_path: Path) -> None:
    data: list[dict[str, Any]] = [{"i": i, "judge": {"score": i}} for i in range(10)]
    data[4] = {"i": 4, "judge": {"score": "four"}}  # a structured output gone wrong
    data[6] = {"i": 6, "judge": {"score": 6, "reason": "ok"}}  # a new key: null elsewhere
    data[7] = {"i": 7, "judge": {"reason": "no score"}}
    data[8] = {"i": 8, "judge": {"score": 8, "reason": ["not", "text"]}}
    dataset = run(tmp_path, data, 3)
    judge = dataset["judge"]
    assert judge[0] == {"score": 0, "reason": None}
    assert judge[4] is None
    assert judge[6] == {"score": 6, "reason": "ok"}
    assert judge[7] == {"score": None, "reason": "no score"}
    assert judge[8] is None
    messages = refusals(dataset)
    assert list(messages) == [4, 8]
    assert "holds {'score': 'four'} (dict {score: str})" in messages[4]
    assert "from {'score': 0} on, made it a dict {score: number} column" in messages[4]
    assert "dict {score: number, reason: str} column" in messages[8]


def test_a_list_whose_items_mix_kinds_is_refused_even_as_the_first_value(
    tmp_path: Path,
) -> None:
    data: list[dict[str, Any]] = [{"i": 0, "xs": [1, "a"]}] + [
        {"i": i, "xs": [str(i)]} for i in range(1, 6)
    ]
    data[3] = {"i": 3, "xs": [["nested"], "flat"]}
    dataset = run(tmp_path, data, 2)
    assert dataset["xs"] == [None, ["1"], ["2"], None, ["4"], ["5"]]  # the next value rules
    messages = refusals(dataset)
    assert list(messages) == [0, 3]
    assert "a list whose items mix kinds: parquet cannot store it" in messages[0]


def test_shapes_merge_what_parquet_stores_together() -> None:
    assert shape_of({"a": [1, None, 2.5], "b": None}) == ("dict", {"a": ("list", "number")})
    assert shape_of([True, 1]) == MIXED  # Arrow keeps bool and int apart
    assert shape_of([{"role": "user"}, {"role": 1}]) == MIXED
    ok, merged = merge_shapes(("list", None), ("list", ("dict", {"role": "str"})))
    assert ok
    assert describe(merged) == "list of dict {role: str}"
    assert merge_shapes(("dict", {"a": "str"}), ("dict", {"b": "number"})) == (
        True,
        ("dict", {"a": "str", "b": "number"}),
    )
    assert merge_shapes(("list", "str"), ("list", "number"))[0] is False
    assert merge_shapes(("list", "str"), "str")[0] is False
