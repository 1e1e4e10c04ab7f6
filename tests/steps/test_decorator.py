from __future__ import annotations

import pytest

from alambic.runtime_parameters import RuntimeParameter
from alambic.steps import GeneratorStep, GlobalStep, Step, StepInput, StepOutput
from alambic.steps.decorator import step


@step(inputs=["instruction"], outputs=["length"])
def measure(inputs: StepInput, *, scale: RuntimeParameter[int] = 1, suffix: str = "") -> StepOutput:
    yield [{**row, "length": len(row["instruction"]) * (scale or 1)} for row in inputs]


def test_normal_step_from_function() -> None:
    instance = measure(name="m")
    assert isinstance(instance, Step)
    assert instance.name == "m"
    assert instance.get_inputs() == {"instruction": True}
    assert instance.get_outputs() == {"length": True}
    assert instance.process_arity() == 1
    (out,) = list(instance.process([{"instruction": "abc"}]))
    assert out == [{"instruction": "abc", "length": 3}]


def test_keyword_arguments_become_fields_and_runtime_parameters() -> None:
    instance = measure(scale=2, suffix="x")
    assert instance.scale == 2
    assert instance.suffix == "x"
    assert instance.runtime_parameters_names["scale"] is False
    assert "suffix" not in instance.runtime_parameters_names
    instance.set_runtime_parameters({"scale": 10})
    (out,) = list(instance.process([{"instruction": "ab"}]))
    assert out[0]["length"] == 20


def test_several_predecessors_and_returned_list() -> None:
    @step(outputs=["n"])
    def count(*inputs: StepInput) -> list[dict[str, int]]:
        return [{"n": sum(len(batch) for batch in inputs)}]

    instance = count()
    assert instance.process_arity() is None
    assert list(instance.process([{}], [{}, {}])) == [[{"n": 3}]]


def test_global_step() -> None:
    @step(inputs=["x"], outputs=["x"], step_type="global")
    def dedup(inputs: StepInput) -> StepOutput:
        seen: set[object] = set()
        out = []
        for row in inputs:
            if row["x"] not in seen:
                seen.add(row["x"])
                out.append(row)
        yield out

    instance = dedup()
    assert isinstance(instance, GlobalStep)
    assert list(instance.process([{"x": 1}, {"x": 1}, {"x": 2}])) == [[{"x": 1}, {"x": 2}]]


def test_generator_step_with_offset() -> None:
    @step(outputs=["i"], step_type="generator")
    def numbers(offset: int = 0, *, total: int = 5) -> StepOutput:
        for start in range(offset, total, 2):
            yield [{"i": i} for i in range(start, min(start + 2, total))], start + 2 >= total

    instance = numbers(total=5)
    assert isinstance(instance, GeneratorStep)
    assert [rows for rows, _ in instance.process(3)] == [[{"i": 3}, {"i": 4}]]


def test_generator_without_offset_skips_rows_itself() -> None:
    @step(outputs=["i"], step_type="generator")
    def numbers() -> StepOutput:
        yield [{"i": 0}, {"i": 1}, {"i": 2}]
        yield [{"i": 3}, {"i": 4}]

    batches = list(numbers().process(offset=2))
    assert batches == [([{"i": 2}], False), ([{"i": 3}, {"i": 4}], False)]


def test_misuse_errors() -> None:
    with pytest.raises(ValueError, match="step_type must be one of"):
        step(step_type="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot declare inputs"):
        step(inputs=["a"], step_type="generator")
    with pytest.raises(TypeError, match="takes no input batch"):

        @step()
        def nothing() -> StepOutput:
            yield []


def test_decorated_step_round_trips_through_dump() -> None:
    from alambic.utils.serialization import load_component

    rebuilt = load_component(measure(name="m", scale=3).dump())
    assert type(rebuilt) is measure
    assert rebuilt.scale == 3
    assert rebuilt.name == "m"
