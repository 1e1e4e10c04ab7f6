"""Building a pipeline (``with``, ``pipeline=``, ``>>``, ``connect``) and the checks made
before a run starts: each mistake raises a clear error naming the step and what exists."""

from __future__ import annotations

from typing import Any

import pytest

from alambic.errors import (
    MappingError,
    MissingColumnError,
    PipelineValidationError,
    RuntimeParameterError,
)
from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.runtime_parameters import RequiredRuntimeParameter
from alambic.steps import GeneratorStep, LoadDataFromDicts, Step, StepInput, StepOutput
from alambic.steps.tasks.text_generation import TextGeneration


class Tag(Step):
    """Appends ``tag`` to the ``text`` column's rows, as column ``tagged``."""

    tag: str = "x"

    @property
    def inputs(self) -> list[str]:
        return ["text"]

    @property
    def outputs(self) -> list[str]:
        return ["tagged"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**row, "tagged": f"{row['text']}:{self.tag}"} for row in inputs]


class Final(Step):
    """Appends ``tag`` to the ``tagged`` column, as column ``final``."""

    tag: str = "y"

    @property
    def inputs(self) -> list[str]:
        return ["tagged"]

    @property
    def outputs(self) -> list[str]:
        return ["final"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**row, "final": f"{row['tagged']}:{self.tag}"} for row in inputs]


class NeedsThreshold(Step):
    threshold: RequiredRuntimeParameter[float] = None

    @property
    def inputs(self) -> list[str]:
        return ["text"]

    @property
    def outputs(self) -> list[str]:
        return ["above"]

    def process(self, inputs: StepInput) -> StepOutput:
        assert self.threshold is not None
        yield [{**row, "above": len(row["text"]) > self.threshold} for row in inputs]


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"text": f"t{i}"} for i in range(n)]


def _run(pipeline: Pipeline, **kwargs: Any) -> Any:
    return pipeline.run(use_cache=False, show_progress=False, **kwargs)


# -- building --------------------------------------------------------------------------------


def test_with_block_registers_steps_and_rshift_chains() -> None:
    with Pipeline(name="build") as p:
        load = LoadDataFromDicts(name="load", data=_rows(3))
        a = Tag(name="a", tag="A")
        b = Final(name="b", tag="B")
        returned = load >> a >> b
    assert returned is b
    assert list(p.steps) == ["load", "a", "b"]
    assert p.dag.successors["load"] == ["a"]
    assert p.dag.predecessors["b"] == ["a"]
    rows = _run(p)["default"]["train"]
    assert rows["final"] == ["t0:A:B", "t1:A:B", "t2:A:B"]
    assert rows["text"] == ["t0", "t1", "t2"]


def test_pipeline_argument_instead_of_with_block() -> None:
    p = Pipeline(name="explicit")
    load = LoadDataFromDicts(name="load", data=_rows(2), pipeline=p)
    tag = Tag(name="tag", pipeline=p)
    load >> tag
    assert list(p.steps) == ["load", "tag"]
    assert _run(p)["default"]["train"]["tagged"] == ["t0:x", "t1:x"]


def test_fan_out_list_and_fan_in_list() -> None:
    with Pipeline(name="fan") as p:
        load = LoadDataFromDicts(name="load", data=_rows(4), batch_size=3)
        b, c = Tag(name="b", tag="B"), Tag(name="c", tag="C")
        join = Final(name="join", tag="J", output_mappings={"final": "j"})
        out = load >> [b, c]
        assert out == [b, c]
        assert ([b, c] >> join) is join
    assert p.dag.successors["load"] == ["b", "c"]
    assert p.dag.predecessors["join"] == ["b", "c"]
    rows = _run(p)["default"]["train"]
    # row i of join is row i of b merged with row i of c (later predecessor wins on conflicts)
    assert rows.num_rows == 4
    assert rows["j"] == [f"t{i}:C:J" for i in range(4)]


def test_connect_chains_steps_like_rshift() -> None:
    with Pipeline(name="connect") as p:
        load = LoadDataFromDicts(name="load", data=_rows(2))
        a = Tag(name="a", tag="A")
        b = Final(name="b", tag="B")
        p.connect(load, a, b)
    assert dict(p.dag.successors) == {"load": ["a"], "a": ["b"]}
    assert _run(p)["default"]["train"]["final"] == ["t0:A:B", "t1:A:B"]


def test_step_connect_method_to_several_successors() -> None:
    with Pipeline(name="connect-many") as p:
        load = LoadDataFromDicts(name="load", data=_rows(2))
        a, b = Tag(name="a", tag="A"), Tag(name="b", tag="B")
        load.connect(a, b)
    distiset = _run(p)
    assert sorted(distiset) == ["a", "b"]
    assert distiset["a"]["train"]["tagged"] == ["t0:A", "t1:A"]
    assert distiset["b"]["train"]["tagged"] == ["t0:B", "t1:B"]


def test_default_names_are_unique_snake_case() -> None:
    with Pipeline(name="names") as p:
        LoadDataFromDicts(data=_rows(1))
        first, second = Tag(), Tag()
    assert (first.name, second.name) == ("tag_0", "tag_1")
    assert list(p.steps) == ["load_data_from_dicts_0", "tag_0", "tag_1"]


def test_step_outside_a_pipeline_cannot_be_connected() -> None:
    with Pipeline(name="p1"):
        inside = LoadDataFromDicts(name="load", data=_rows(1))
    outside = Tag(name="outside")
    with pytest.raises(PipelineValidationError, match=r"'outside' is not part of a pipeline"):
        outside >> inside
    with pytest.raises(PipelineValidationError, match=r"'load' to 'outside'.*different pipelines"):
        inside >> outside


# -- validation errors -----------------------------------------------------------------------


def test_missing_required_column_names_step_column_and_available() -> None:
    with Pipeline(name="missing") as p:
        load = LoadDataFromDicts(name="load", data=[{"prompt": "hi"}])
        tag = Tag(name="tag")
        load >> tag
    with pytest.raises(MissingColumnError) as info:
        _run(p)
    message = str(info.value)
    assert "'tag'" in message
    assert "'text'" in message
    assert "['prompt']" in message
    assert "input_mappings" in message


def test_missing_column_after_input_mappings_names_the_mapping() -> None:
    with Pipeline(name="missing-mapped") as p:
        load = LoadDataFromDicts(name="load", data=[{"prompt": "hi"}])
        tag = Tag(name="tag", input_mappings={"text": "promt"})
        load >> tag
    with pytest.raises(MissingColumnError, match=r"'promt' \(input_mappings reads it for 'text'\)"):
        _run(p)


def test_input_mappings_fix_the_missing_column() -> None:
    with Pipeline(name="mapped") as p:
        load = LoadDataFromDicts(name="load", data=[{"prompt": "hi"}])
        tag = Tag(name="tag", input_mappings={"text": "prompt"})
        load >> tag
    rows = _run(p)["default"]["train"]
    assert rows["tagged"] == ["hi:x"]
    assert rows["prompt"] == ["hi"]  # the mapped column keeps its original name downstream


def test_column_produced_two_steps_upstream_is_available() -> None:
    with Pipeline(name="ancestor") as p:
        load = LoadDataFromDicts(name="load", data=_rows(2))
        a = Tag(name="a", output_mappings={"tagged": "first"})
        b = Tag(name="b")  # reads "text", produced by the loader two steps up
        load >> a >> b
    rows = _run(p)["default"]["train"]
    assert rows["first"] == ["t0:x", "t1:x"]
    assert rows["tagged"] == ["t0:x", "t1:x"]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"input_mappings": {"txt": "prompt"}}, r"'tag'.*input_mappings key 'txt'.*\['text'\]"),
        (
            {"output_mappings": {"taged": "out"}},
            r"'tag'.*output_mappings key 'taged'.*\['tagged'\]",
        ),
    ],
)
def test_unknown_mapping_key(kwargs: dict[str, Any], pattern: str) -> None:
    # the message is the same whichever class catches it
    with Pipeline(name="mapping"), pytest.raises(ValueError, match=pattern):
        Tag(name="tag", **kwargs)


def test_construction_errors_keep_their_alambic_class() -> None:
    with Pipeline(name="classes"):
        with pytest.raises(MappingError):
            Tag(name="tag", input_mappings={"txt": "prompt"})
        LoadDataFromDicts(name="same", data=_rows(1))
        with pytest.raises(PipelineValidationError):
            Tag(name="same")


def test_cycle_is_reported_with_its_steps() -> None:
    with Pipeline(name="cycle") as p:
        load = LoadDataFromDicts(name="load", data=_rows(1))
        a, b = Tag(name="a"), Tag(name="b")
        load >> a >> b >> a
    with pytest.raises(PipelineValidationError, match=r"cycle through steps \['a', 'b'\]"):
        _run(p)


def test_self_loop_is_refused() -> None:
    with Pipeline(name="self-loop"):
        a = Tag(name="a")
        with pytest.raises(PipelineValidationError, match="'a' cannot be connected to itself"):
            a >> a


def test_duplicate_names_are_refused_at_creation() -> None:
    with Pipeline(name="dupes"):
        LoadDataFromDicts(name="same", data=_rows(1))
        with pytest.raises(ValueError, match=r"named 'same' \(LoadDataFromDicts and Tag\)"):
            Tag(name="same")


def test_root_that_is_not_a_generator() -> None:
    with Pipeline(name="no-generator") as p:
        a, b = Tag(name="a"), Final(name="b")
        a >> b
    with pytest.raises(
        PipelineValidationError, match=r"'a' \(Tag\) has no predecessor but is not a generator"
    ):
        _run(p)


def test_generator_with_a_predecessor_is_refused() -> None:
    with Pipeline(name="generator-fed") as p:
        first = LoadDataFromDicts(name="first", data=_rows(1))
        second = LoadDataFromDicts(name="second", data=_rows(1))
        first >> second
    with pytest.raises(PipelineValidationError, match=r"'second' is a generator step.*\['first'\]"):
        _run(p)


def test_unconnected_step() -> None:
    with Pipeline(name="orphan") as p:
        load = LoadDataFromDicts(name="load", data=_rows(1))
        load >> Tag(name="tag")
        Tag(name="lonely")
    with pytest.raises(PipelineValidationError, match="'lonely' is not connected"):
        _run(p)


def test_empty_pipeline() -> None:
    with pytest.raises(PipelineValidationError, match="no steps"):
        _run(Pipeline(name="empty"))


def test_required_runtime_parameter_missing_then_given() -> None:
    with Pipeline(name="runtime") as p:
        load = LoadDataFromDicts(name="load", data=[{"text": "a"}, {"text": "abcd"}])
        check = NeedsThreshold(name="check")
        load >> check
    with pytest.raises(
        RuntimeParameterError, match=r"'check' needs the runtime parameter\(s\) \['threshold'\]"
    ):
        _run(p)
    rows = _run(p, parameters={"check": {"threshold": 2}})["default"]["train"]
    assert rows["above"] == [False, True]


def test_parameters_for_an_unknown_step() -> None:
    with Pipeline(name="unknown-step") as p:
        load = LoadDataFromDicts(name="load", data=_rows(1))
        load >> Tag(name="tag")
    with pytest.raises(RuntimeParameterError, match=r"'tagg'.*Steps: \['load', 'tag'\]"):
        _run(p, parameters={"tagg": {"tag": "y"}}, strict_parameters=True)


def test_unknown_runtime_parameter_name() -> None:
    with Pipeline(name="unknown-param") as p:
        load = LoadDataFromDicts(name="load", data=_rows(1))
        gen = TextGeneration(name="gen", llm=FakeLLM(), input_mappings={"instruction": "text"})
        load >> gen
    with pytest.raises(RuntimeParameterError, match="input_batch_sise"):
        _run(p, parameters={"gen": {"input_batch_sise": 3}}, strict_parameters=True)


def test_validation_failure_sends_no_request_to_the_llm() -> None:
    llm = FakeLLM()
    with Pipeline(name="no-requests") as p:
        load = LoadDataFromDicts(name="load", data=[{"prompt": "hi"}])
        gen = TextGeneration(name="gen", llm=llm)  # needs "instruction"
        load >> gen
    with pytest.raises(MissingColumnError, match="'instruction'"):
        _run(p)
    assert llm.history == []


class _Counting(GeneratorStep):
    @property
    def outputs(self) -> list[str]:
        return ["text"]

    def process(self, offset: int = 0) -> Any:
        yield [{"text": "a"}]


def test_generator_without_rows_in_outputs_feeds_known_columns() -> None:
    with Pipeline(name="gen-columns") as p:
        gen = _Counting(name="gen")
        tag = Tag(name="tag")
        gen >> tag
    assert _run(p)["default"]["train"]["tagged"] == ["a:x"]


def test_input_mapping_keeps_shadowed_column_and_outputs() -> None:
    with Pipeline(name="shadow") as p:
        load = LoadDataFromDicts(name="load", data=[{"text": "t0", "other": "o0"}])
        # reads "other" as its "text"; the row's own "text" column must survive
        tag = Tag(name="tag", input_mappings={"text": "other"})
        load >> tag
    rows = _run(p)["default"]["train"]
    assert rows["tagged"] == ["o0:x"]
    assert rows["other"] == ["o0"]
    assert rows["text"] == ["t0"]


def test_input_mapping_onto_an_output_name_keeps_the_output() -> None:
    with Pipeline(name="clobber") as p:
        load = LoadDataFromDicts(name="load", data=[{"text": "t0"}])
        a = Tag(name="a", tag="A")
        b = Tag(
            name="b",
            tag="B",
            input_mappings={"text": "tagged"},
            output_mappings={"tagged": "twice"},
        )
        load >> a >> b
    rows = _run(p)["default"]["train"]
    assert rows["twice"] == ["t0:A:B"]
    assert rows["tagged"] == ["t0:A"]
