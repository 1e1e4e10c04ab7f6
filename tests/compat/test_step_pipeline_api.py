"""distilabel's public Step / Pipeline API, used as distilabel's docs show it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import MappingError, RuntimeParameterError
from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.pipeline._compat import MissingRequirementsError
from alambic.runtime_parameters import RuntimeParameter, UnknownRuntimeParameterWarning
from alambic.steps import (
    GeneratorStep,
    GlobalStep,
    KeepColumns,
    LoadDataFromDicts,
    Step,
    StepInput,
)
from alambic.steps.tasks import TextGeneration, task
from alambic.steps.typing import StepOutput


class Multiply(Step):
    factor: RuntimeParameter[int]  # no default: required at run time, not construction

    @property
    def inputs(self) -> list[str]:
        return ["x"]

    @property
    def outputs(self) -> list[str]:
        return ["y"]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        yield [{**row, "y": row["x"] * self.factor} for row in inputs]


class Plot(Step):
    @property
    def inputs(self) -> list[str]:
        return ["y"]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        values = [row["y"] for row in inputs]
        self.save_artifact(
            "values",
            lambda path: (path / "values.json").write_text(json.dumps(values)),
            metadata={"count": len(values)},
        )
        yield inputs


def test_pipeline_name_is_optional_and_derived_from_the_script() -> None:
    pipeline = Pipeline()
    assert pipeline.name == "test_step_pipeline_api"


def test_signature_is_a_property_that_can_still_be_called() -> None:
    with Pipeline(name="sig") as pipeline:
        LoadDataFromDicts(data=[{"x": 1}]) >> KeepColumns(columns=["x"])
    assert isinstance(pipeline.signature, str)
    assert len(pipeline.signature) == 64
    assert pipeline.signature() == pipeline.signature


def test_requirements_are_checked_before_anything_runs() -> None:
    pipeline = Pipeline(name="req", requirements=["pyyaml>=1", "no-such-package-xyz>=2"])
    assert pipeline.requirements_to_install() == ["no-such-package-xyz>=2"]
    with pipeline:
        LoadDataFromDicts(data=[{"x": 1}]) >> KeepColumns(columns=["x"])
    with pytest.raises(MissingRequirementsError, match=r"pip install 'no-such-package-xyz>=2'"):
        pipeline.run(use_cache=False)
    assert Pipeline(name="ok", requirements=["pyyaml"]).requirements_to_install() == []


def test_runtime_parameter_without_default_is_required_at_run_not_construction() -> None:
    with Pipeline(name="rp") as pipeline:
        load = LoadDataFromDicts(data=[{"x": 2}, {"x": 5}])
        mul = Multiply(name="mul")
        load >> mul
    assert mul.factor is None
    info = pipeline.get_runtime_parameters_info()["mul"]
    assert {"name": "factor", "optional": False} in info
    with pytest.raises(RuntimeParameterError, match=r"'mul' needs the runtime parameter"):
        pipeline.run(use_cache=False)
    rows = pipeline.run(use_cache=False, parameters={"mul": {"factor": 3}})["default"]["train"]
    assert list(rows["y"]) == [6, 15]


def test_step_kind_properties_and_mapping_checks() -> None:
    class Gen(GeneratorStep):
        def process(self, offset: int = 0) -> Any:
            yield [{"x": 1}], True

    class Everything(GlobalStep):
        def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
            yield inputs

    kinds = [(s.is_generator, s.is_global, s.is_normal) for s in (Gen(), Everything(), Plot())]
    assert kinds == [(True, False, False), (False, True, False), (False, False, True)]
    keep = KeepColumns(columns=["a"], input_mappings={"a": "b"})
    keep.verify_inputs_mappings()
    keep.verify_outputs_mappings()
    keep.input_mappings = {"zzz": "b"}
    with pytest.raises(MappingError, match=r"input_mappings keys \['zzz'\]"):
        keep.verify_inputs_mappings()


def test_llm_runtime_parameters_are_nested_in_the_info() -> None:
    info = TextGeneration(llm=FakeLLM()).get_runtime_parameters_info()
    llm = next(entry for entry in info if entry["name"] == "llm")
    assert {e["name"] for e in llm["runtime_parameters_info"]} >= {"generation_kwargs"}
    assert {
        k: v
        for k, v in next(e for e in info if e["name"] == "num_generations").items()
        if k != "description"
    } == {"name": "num_generations", "optional": True}


def test_a_step_created_outside_a_pipeline_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="alambic"):
        KeepColumns(name="loose", columns=["a"])
    assert "Step 'loose' was created outside a pipeline" in caplog.text


def test_save_artifact_lands_in_the_distiset(tmp_path: Path) -> None:
    with Pipeline(name="arts") as pipeline:
        load = LoadDataFromDicts(data=[{"y": 1}, {"y": 2}])
        load >> Plot(name="plot")
    distiset = pipeline.run(use_cache=False)
    assert distiset.artifacts_path is not None
    folder = distiset.artifacts_path / "plot" / "values"
    assert json.loads((folder / "artifacts" / "values.json").read_text()) == [1, 2]
    assert json.loads((folder / "metadata.json").read_text()) == {"count": 2}
    out = distiset.save_to_disk(tmp_path / "saved")
    assert (out / "artifacts" / "plot" / "values" / "metadata.json").is_file()


def test_task_decorator_builds_a_task_from_a_docstring_template() -> None:
    @task(inputs=["topic"], outputs=["slogan"])
    def Slogan(output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write a slogan.

        ---
        system_prompt: You write short advertising slogans.
        user_message_template: A slogan about {topic}, in one line.
        ---
        """
        return {"slogan": output.upper() if output else None}

    with Pipeline(name="decorated") as pipeline:
        load = LoadDataFromDicts(data=[{"topic": "bread"}])
        load >> Slogan(name="slogan", llm=FakeLLM())
    rows = pipeline.run(use_cache=False)["default"]["train"]
    assert rows["slogan"][0] == "FAKE REPLY TO: A SLOGAN ABOUT BREAD, IN ONE LINE."
    prompt = rows["alambic_metadata"][0]["raw_input_slogan"]
    assert prompt[0] == {"role": "system", "content": "You write short advertising slogans."}


def test_task_decorator_refuses_unknown_placeholders_and_missing_prompts() -> None:
    from alambic.errors import AlambicUserError

    with pytest.raises(AlambicUserError, match=r"uses \['topik'\]"):

        @task(inputs=["topic"], outputs=["x"])
        def Bad(output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
            """---
            system_prompt: hi
            user_message_template: about {topik}
            ---"""
            return {}

    with pytest.raises(AlambicUserError, match="has no docstring"):

        @task(inputs=["topic"], outputs=["x"])
        def NoDoc(output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
            return {}


def test_set_runtime_parameters_directly_warns_on_an_unknown_name() -> None:
    step = Multiply(name="times")
    with pytest.warns(UnknownRuntimeParameterWarning, match=r"'factr'.*Did you mean 'factor'"):
        step.set_runtime_parameters({"factr": 3, "factor": 4})
    assert step.factor == 4  # the known name is still set
    with pytest.raises(RuntimeParameterError, match=r"'factr'.*Did you mean 'factor'"):
        step.set_runtime_parameters({"factr": 3}, strict=True)
    # nested: an unknown LLM parameter warns with the LLM's names
    gen = TextGeneration(name="gen", llm=FakeLLM())
    with pytest.warns(UnknownRuntimeParameterWarning, match=r"generation_kwarg'.*Did you mean"):
        gen.set_runtime_parameters({"llm": {"generation_kwarg": {}}})
    with pytest.warns(UnknownRuntimeParameterWarning, match="Did you mean 'generation_kwargs'"):
        gen.llm.set_runtime_parameters({"generation_kwarg": {}})
    with pytest.raises(RuntimeParameterError):
        gen.llm.set_runtime_parameters({"generation_kwarg": {}}, strict=True)
    with pytest.raises(RuntimeParameterError, match="Invalid value"):  # bad values still raise
        step.set_runtime_parameters({"input_batch_size": 0})
