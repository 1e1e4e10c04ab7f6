from __future__ import annotations

import pytest

from alambic.errors import MissingColumnError
from alambic.steps.columns import (
    CombineOutputs,
    ExpandColumns,
    GroupColumns,
    KeepColumns,
    MergeColumns,
)

META = "alambic_metadata"


def test_keep_columns_keeps_order_and_declares_inputs() -> None:
    step = KeepColumns(columns=["b", "a"])
    assert step.get_inputs() == {"b": True, "a": True}
    assert step.outputs == ["b", "a"]
    (out,) = list(step.process([{"a": 1, "b": 2, "c": 3}, {"c": 0, "a": 4, "b": 5}]))
    assert out == [{"b": 2, "a": 1}, {"b": 5, "a": 4}]
    assert [list(r) for r in out] == [["b", "a"], ["b", "a"]]
    with pytest.raises(MissingColumnError, match=r"'b'.*it has \['a'\]"):
        next(step.process([{"a": 1}]))
    assert KeepColumns._runs_inline is True


def test_keep_columns_with_input_mappings() -> None:
    step = KeepColumns(columns=["instruction"], input_mappings={"instruction": "prompt"})
    assert step.mapped_inputs() == {"prompt": True}
    (out,) = list(step.process_applying_mappings([{"prompt": "p", "x": 1}]))
    # the kept column is an output of the step, so it leaves under the step's name
    assert step.mapped_outputs() == {"instruction": True}
    assert out == [{"instruction": "p"}]


def test_combine_outputs_merges_aligned_rows_and_metadata() -> None:
    step = CombineOutputs()
    assert step.process_arity() is None
    left = [{"q": "a", "g1": "x", META: {"raw_output_t1": "x"}}, {"q": "b", "g1": "y", META: {}}]
    right = [{"q": "a", "g2": "z", META: {"raw_output_t2": "z"}}, {"q": "b", "g2": "w"}]
    (out,) = list(step.process(left, right))
    assert out == [
        {"q": "a", "g1": "x", META: {"raw_output_t1": "x", "raw_output_t2": "z"}, "g2": "z"},
        {"q": "b", "g1": "y", META: {}, "g2": "w"},
    ]
    with pytest.raises(ValueError, match=r"different numbers of rows \[2, 1\]"):
        next(step.process(left, right[:1]))


def test_group_columns_from_three_branches() -> None:
    step = GroupColumns(columns=["generation", "model_name"])
    assert step.outputs == ["grouped_generation", "grouped_model_name"]
    branches = [
        [{"instruction": "i", "generation": f"g{k}", "model_name": f"m{k}", META: {f"s{k}": k}}]
        for k in range(3)
    ]
    (out,) = list(step.process(*branches))
    assert out == [
        {
            "instruction": "i",
            META: {"s0": 0, "s1": 1, "s2": 2},
            "grouped_generation": ["g0", "g1", "g2"],
            "grouped_model_name": ["m0", "m1", "m2"],
        }
    ]
    named = GroupColumns(columns=["generation"], output_columns=["generations"])
    (out,) = list(named.process([{"generation": "a"}], [{"x": 1}]))
    assert out == [{"generations": ["a", None]}]
    with pytest.raises(ValueError, match="one column per grouped column"):
        GroupColumns(columns=["a", "b"], output_columns=["x"])


def test_merge_columns_splices_lists() -> None:
    step = MergeColumns(
        columns=["chosen", "others"], output_column="responses", keep_source_columns=True
    )
    assert step.outputs == ["responses"]
    (out,) = list(step.process([{"chosen": "a", "others": ["b", None]}]))
    assert out == [{"chosen": "a", "others": ["b", None], "responses": ["a", "b", None]}]
    with pytest.raises(MissingColumnError, match="'others'"):
        next(step.process([{"chosen": "a"}]))
    dropping = MergeColumns(columns=["chosen", "others"], output_column="responses")
    (out,) = list(dropping.process([{"q": 1, "chosen": "a", "others": ["b"]}]))
    assert out == [{"q": 1, "responses": ["a", "b"]}]


def test_expand_columns_list_and_rename() -> None:
    step = ExpandColumns(columns={"generations": "generation", "models": "model"})
    assert step.outputs == ["generation", "model"]
    assert step.get_inputs() == {"generations": True, "models": True}
    rows = [
        {"q": "a", "generations": ["x", "y"], "models": ["m1", "m2"], META: [{"k": 0}, {"k": 1}]},
        {"q": "b", "generations": [], "models": []},
        {"q": "c", "generations": None, "models": None},
    ]
    (out,) = list(step.process(rows))
    assert out == [
        {"q": "a", "generation": "x", "model": "m1", META: {"k": 0}},
        {"q": "a", "generation": "y", "model": "m2", META: {"k": 1}},
        {"q": "c", "generation": None, "model": None},
    ]
    with pytest.raises(ValueError, match=r"same length.*\{'generations': 2, 'models': 1\}"):
        next(step.process([{"generations": ["x", "y"], "models": ["m"]}]))


def test_expand_columns_split_statistics() -> None:
    meta = {"statistics_t": {"input_tokens": [3, 4], "output_tokens": [5, 6]}, "raw": "r"}
    row = {"generations": ["x", "y"], META: meta}
    (plain,) = list(ExpandColumns(columns=["generations"]).process([row]))
    assert plain[1][META] == meta
    (split,) = list(ExpandColumns(columns=["generations"], split_statistics=True).process([row]))
    assert [r["generations"] for r in split] == ["x", "y"]
    assert split[1][META] == {"statistics_t": {"input_tokens": 4, "output_tokens": 6}, "raw": "r"}
