"""Steps: names, columns, mappings, runtime parameters, generator normalisation."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from pydantic import ValidationError

from alambic.errors import InvalidNameError, RuntimeParameterError
from alambic.pipeline import Pipeline
from alambic.runtime_parameters import RequiredRuntimeParameter, RuntimeParameter
from alambic.steps import GeneratorStep, Step, StepInput, StepOutput, UnknownArgumentWarning
from alambic.steps.base import normalize_generator_item


class Upper(Step):
    factor: RuntimeParameter[int] = 1
    path: RequiredRuntimeParameter[str] = None

    @property
    def inputs(self) -> list[str]:
        return ["text"]

    @property
    def outputs(self) -> list[str]:
        return ["upper"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**row, "upper": row["text"].upper() * (self.factor or 1)} for row in inputs[:1]]
        yield [{**row, "upper": row["text"].upper() * (self.factor or 1)} for row in inputs[1:]]


def test_name_is_inferred_and_unique_within_a_pipeline() -> None:
    with Pipeline(name="p"):
        a = Upper()
        b = Upper()
    assert (a.name, b.name) == ("upper_0", "upper_1")
    assert Upper().name == "upper_0"


@pytest.mark.parametrize("bad", ["has space", "slash/name", "dot.name", ""])
def test_invalid_names_are_rejected_with_a_suggestion(bad: str) -> None:
    with pytest.raises(InvalidNameError, match="letters, digits"):
        Upper(name=bad)


def test_inputs_and_outputs_accept_lists_and_dicts() -> None:
    step = Upper()
    assert step.get_inputs() == {"text": True}
    assert step.get_outputs() == {"upper": True}


def test_unknown_mapping_keys_name_the_step_and_the_columns() -> None:
    with pytest.raises(ValueError, match=r"'up' .*input_mappings key 'prompt'.*\['text'\]"):
        Upper(name="up", input_mappings={"prompt": "instruction"})
    with pytest.raises(ValueError, match=r"output_mappings key 'nope'.*\['upper'\]"):
        Upper(name="up", output_mappings={"nope": "x"})


def test_mappings_rename_columns_around_process() -> None:
    step = Upper(input_mappings={"text": "sentence"}, output_mappings={"upper": "shout"})
    step.load()
    rows = [row for batch in step.process_applying_mappings([{"sentence": "hi"}]) for row in batch]
    assert rows == [{"sentence": "hi", "shout": "HI"}]
    assert step.mapped_inputs() == {"sentence": True}
    assert step.mapped_outputs() == {"shout": True}


def test_every_batch_yielded_by_process_counts() -> None:
    step = Upper()
    batches = list(step.process([{"text": "a"}, {"text": "b"}]))
    assert [[r["upper"] for r in b] for b in batches] == [["A"], ["B"]]


def test_runtime_parameters_are_settable_after_construction() -> None:
    step = Upper(name="u")
    assert step.runtime_parameters_names == {
        "factor": False,
        "path": True,
        "input_batch_size": False,
    }
    assert step.missing_runtime_parameters() == ["path"]
    step.set_runtime_parameters({"factor": 3, "path": "/tmp"})
    assert (step.factor, step.path) == (3, "/tmp")
    with pytest.raises(
        RuntimeParameterError, match=r"no runtime parameter 'factr'.*Did you mean 'factor'"
    ):
        step.set_runtime_parameters({"factr": 2}, strict=True)
    with pytest.raises(RuntimeParameterError, match="Invalid value"):
        step.set_runtime_parameters({"input_batch_size": 0})


def test_unknown_arguments_warn_and_are_ignored() -> None:
    with pytest.warns(UnknownArgumentWarning, match=r"no argument 'colour'; ignored"):
        step = Upper(input_batch_size=4, colour="blue")
    assert step.input_batch_size == 4


def test_a_typo_of_a_real_argument_raises_with_did_you_mean() -> None:
    # issue 11 #11: a typo is an error, as for LLMs (it was a warning, and the value lost)
    with pytest.raises(
        ValidationError, match=r"'input_batch_sise' \(did you mean 'input_batch_size'\?\)"
    ):
        Upper(input_batch_size=4, input_batch_sise=3)


class Counter(GeneratorStep):
    @property
    def outputs(self) -> list[str]:
        return ["i"]

    def process(self, offset: int = 0) -> Any:
        yield {"i": offset}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"i": 1}, ([{"i": 1}], None)),
        ([{"i": 1}, {"i": 2}], ([{"i": 1}, {"i": 2}], None)),
        (([{"i": 1}], True), ([{"i": 1}], True)),
        (({"i": 1}, False), ([{"i": 1}], False)),
    ],
)
def test_generator_items_are_normalised(item: Any, expected: Any) -> None:
    assert normalize_generator_item(item, step_name="g") == expected


def test_a_generator_yielding_something_else_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="Generator step 'g' yielded int"):
        normalize_generator_item(3, step_name="g")


def test_standalone_generator_process_starts_at_offset() -> None:
    assert next(Counter().process(offset=5)) == {"i": 5}


def test_no_warning_for_known_arguments() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Upper(name="ok", input_batch_size=2)
