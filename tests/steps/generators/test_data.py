from __future__ import annotations

import time

import pytest

from alambic.steps.generators import LoadDataFromDicts


def _drain(step: LoadDataFromDicts, offset: int = 0) -> list[tuple[list[dict[str, object]], bool]]:
    return list(step.process(offset))


def test_batches_of_batch_size_with_last_flag() -> None:
    data = [{"instruction": f"q{i}", "n": i} for i in range(7)]
    step = LoadDataFromDicts(data=data, batch_size=3)
    assert step.outputs == ["instruction", "n"]
    batches = _drain(step)
    assert [[r["n"] for r in rows] for rows, _ in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [last for _, last in batches] == [False, False, True]


def test_offset_starts_at_that_row() -> None:
    step = LoadDataFromDicts(data=[{"n": i} for i in range(10)], batch_size=4)
    batches = _drain(step, offset=6)
    assert [[r["n"] for r in rows] for rows, _ in batches] == [[6, 7, 8, 9]]
    assert batches[-1][1] is True
    assert _drain(step, offset=10) == [([], True)]


def test_rows_are_copies_so_downstream_edits_do_not_leak() -> None:
    step = LoadDataFromDicts(data=[{"a": 1}])
    ((rows, _),) = _drain(step)
    rows[0]["b"] = 2
    assert step.data == [{"a": 1}]


def test_output_mappings_rename_columns() -> None:
    step = LoadDataFromDicts(data=[{"prompt": "x"}], output_mappings={"prompt": "instruction"})
    assert step.mapped_outputs() == {"instruction": True}
    assert _drain(step)[0][0] == [{"instruction": "x"}]
    # the base step reports it at construction (pydantic wraps it in a ValidationError)
    with pytest.raises(ValueError, match="output_mappings key 'nope'"):
        LoadDataFromDicts(data=[{"prompt": "x"}], output_mappings={"nope": "y"})


def test_empty_data_yields_one_empty_last_batch() -> None:
    step = LoadDataFromDicts(data=[])
    assert step.outputs == []
    assert _drain(step) == [([], True)]


def test_is_inline_and_fast() -> None:
    assert LoadDataFromDicts._runs_inline is True
    data = [{"instruction": f"q{i}", "n": i} for i in range(100_000)]
    start = time.perf_counter()
    step = LoadDataFromDicts(data=data, batch_size=1000)
    total = sum(len(rows) for rows, _ in step.process())
    elapsed = time.perf_counter() - start
    assert total == 100_000
    assert elapsed < 2.0


def test_data_is_not_copied_and_rows_are_checked() -> None:
    data = [{"a": 1}]
    assert LoadDataFromDicts(data=data).data is data
    with pytest.raises(ValueError, match=r"data\[1\] is a str"):
        LoadDataFromDicts(data=[{"a": 1}, "oops"])


def test_dump_inlines_small_data_and_fingerprints_large_data() -> None:
    from alambic.steps.generators.data import INLINE_ROWS_LIMIT
    from alambic.utils.serialization import dump_component, load_component

    small = LoadDataFromDicts(data=[{"a": 1, "b": [1, 2]}], name="small")
    assert small.dump() == dump_component(small)
    assert load_component(small.dump()).data == [{"a": 1, "b": [1, 2]}]

    rows = [{"q": f"q{i}"} for i in range(INLINE_ROWS_LIMIT + 1)]
    big = LoadDataFromDicts(data=rows, name="big").dump()
    assert big["data"]["num_rows"] == INLINE_ROWS_LIMIT + 1
    assert big["data"]["columns"] == ["q"]
    changed = LoadDataFromDicts(data=[*rows[:-1], {"q": "other"}], name="big").dump()
    assert changed["data"]["sha256"] != big["data"]["sha256"]
    with pytest.raises(ValueError, match="too many to write into the pipeline YAML"):
        load_component(big)
