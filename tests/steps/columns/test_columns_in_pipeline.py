"""The column steps inside a real pipeline run (local executor)."""

from __future__ import annotations

import pytest

from alambic.errors import MissingColumnError
from alambic.pipeline import Pipeline
from alambic.steps import (
    CombineOutputs,
    ExpandColumns,
    GroupColumns,
    KeepColumns,
    LoadDataFromDicts,
    MergeColumns,
    StepInput,
    StepOutput,
    step,
)


@step(inputs=["q"], outputs=["answer_a", "model_name"])
def answer_a(inputs: StepInput) -> StepOutput:
    yield [{**r, "answer_a": "A" + r["q"], "model_name": "ma"} for r in inputs]


@step(inputs=["q"], outputs=["answer_b", "model_name"])
def answer_b(inputs: StepInput) -> StepOutput:
    yield [{**r, "answer_b": "B" + r["q"], "model_name": "mb"} for r in inputs]


def _data(n: int) -> list[dict[str, object]]:
    return [{"q": f"q{i}", "i": i} for i in range(n)]


def test_branches_combined_grouped_merged_expanded_and_kept() -> None:
    with Pipeline(name="columns") as pipeline:
        load = LoadDataFromDicts(data=_data(7), batch_size=3)
        a, b = answer_a(name="a"), answer_b(name="b")
        combine = CombineOutputs(name="combine")
        merge = MergeColumns(
            name="merge", columns=["answer_a", "answer_b"], output_column="answers"
        )
        expand = ExpandColumns(name="expand", columns={"answers": "answer"})
        keep = KeepColumns(name="keep", columns=["i", "answer"])
        load >> [a, b] >> combine >> merge >> expand >> keep
    distiset = pipeline.run(use_cache=False)
    dataset = distiset["default"]["train"]
    assert dataset.column_names == ["i", "answer"]
    assert dataset.num_rows == 14
    assert dataset["i"] == [i for i in range(7) for _ in range(2)]
    assert dataset["answer"][:4] == ["Aq0", "Bq0", "Aq1", "Bq1"]


def test_group_columns_over_three_branches() -> None:
    with Pipeline(name="group") as pipeline:
        load = LoadDataFromDicts(data=_data(5), batch_size=2)
        branches = [answer_a(name="a"), answer_b(name="b"), answer_a(name="c")]
        group = GroupColumns(name="group", columns=["model_name"])
        load >> branches >> group
    dataset = pipeline.run(use_cache=False)["default"]["train"]
    assert dataset.num_rows == 5
    assert dataset["grouped_model_name"] == [["ma", "mb", "ma"]] * 5
    assert "model_name" not in dataset.column_names


def test_keep_columns_missing_column_fails_before_running() -> None:
    with Pipeline(name="missing") as pipeline:
        load = LoadDataFromDicts(data=_data(2))
        keep = KeepColumns(columns=["q", "nope"])
        load >> keep
    with pytest.raises(MissingColumnError, match="'nope'"):
        pipeline.run(use_cache=False)


def test_loader_output_mappings_apply_in_the_pipeline() -> None:
    with Pipeline(name="mapped") as pipeline:
        load = LoadDataFromDicts(data=_data(3), output_mappings={"q": "instruction"})
        keep = KeepColumns(columns=["instruction"])
        load >> keep
    dataset = pipeline.run(use_cache=False)["default"]["train"]
    assert dataset["instruction"] == ["q0", "q1", "q2"]
