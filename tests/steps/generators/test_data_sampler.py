from __future__ import annotations

import pytest

from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import DataSampler, LoadDataFromDicts, make_generator_step
from alambic.steps.tasks import TextGeneration

DATA = [{"q": f"q{i}", "a": i} for i in range(10)]


def test_sampler_yields_samples_of_size_rows_column_by_column() -> None:
    sampler = DataSampler(name="s", data=DATA, size=3, samples=5, batch_size=2)
    sampler.load()
    batches = list(sampler.process())
    assert [len(b) for b, _ in batches] == [2, 2, 1]
    assert [last for _, last in batches] == [False, False, True]
    rows = [r for b, _ in batches for r in b]
    for row in rows:
        assert set(row) == {"q", "a"}
        assert len(row["q"]) == 3
        assert len(set(row["q"])) == 3  # no repeat within a sample
        assert [f"q{a}" for a in row["a"]] == row["q"]  # columns stay aligned
    assert sampler.outputs == ["q", "a"]


def test_sampler_is_reproducible_and_resumes_at_offset() -> None:
    first = [r for b, _ in DataSampler(data=DATA, samples=6, seed=1).process() for r in b]
    again = [r for b, _ in DataSampler(data=DATA, samples=6, seed=1).process() for r in b]
    other = [r for b, _ in DataSampler(data=DATA, samples=6, seed=2).process() for r in b]
    assert first == again
    assert first != other
    resumed = [r for b, _ in DataSampler(data=DATA, samples=6, seed=1).process(4) for r in b]
    assert resumed == first[4:]


def test_sampler_size_larger_than_data_takes_every_row() -> None:
    rows = next(DataSampler(data=DATA[:2], size=5, samples=1).process())[0]
    assert sorted(rows[0]["a"]) == [0, 1]


@pytest.mark.parametrize("data", [[], ["not a dict"], "rows"])
def test_sampler_rejects_bad_data(data: object) -> None:
    with pytest.raises(ValueError, match="data"):
        DataSampler(data=data)


def test_make_generator_step_from_list_dataset_and_dataframe() -> None:
    datasets = pytest.importorskip("datasets")
    pandas = pytest.importorskip("pandas")
    rows = [{"instruction": "a"}, {"instruction": "b"}]
    for source in (rows, datasets.Dataset.from_list(rows), pandas.DataFrame(rows)):
        with Pipeline(name="mgs") as pipeline:
            load = make_generator_step(source, batch_size=1, output_mappings={})
            load >> TextGeneration(name="gen", llm=FakeLLM())
        assert isinstance(load, LoadDataFromDicts)
        train = pipeline.run(use_cache=False, show_progress=False)["default"]["train"]
        assert train["generation"] == ["fake reply to: a", "fake reply to: b"]


def test_make_generator_step_renames_and_rejects_unknown_types() -> None:
    step = make_generator_step([{"x": 1}], name="src", output_mappings={"x": "y"})
    assert step.name == "src"
    assert next(step.process())[0] == [{"y": 1}]
    with pytest.raises(TypeError, match="list of dicts"):
        make_generator_step(42)


def test_sampler_feeds_a_pipeline() -> None:
    with Pipeline(name="sampler") as pipeline:
        DataSampler(name="fewshot", data=DATA, size=2, samples=7, batch_size=3)
    train = pipeline.run(use_cache=False, show_progress=False)["default"]["train"]
    assert train.num_rows == 7
    assert all(len(q) == 2 for q in train["q"])
