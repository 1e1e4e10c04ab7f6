"""Pipelines as files: every built-in step, task and LLM survives YAML and JSON unchanged."""

from __future__ import annotations

import inspect
import json
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import alambic.llms as llms_pkg
import alambic.steps as steps_pkg
import alambic.steps.tasks as tasks_pkg
from alambic.embeddings import SentenceTransformerEmbeddings
from alambic.llms import FakeLLM, OpenAILLM
from alambic.llms.image_generation import OpenAIImageGeneration
from alambic.pipeline import Pipeline, sample_n_steps
from alambic.pipeline.serialization import PipelineLoadError
from alambic.steps import KeepColumns, LoadDataFromDicts
from alambic.steps.base import _Step
from alambic.steps.tasks import TextGeneration, UltraFeedback

# Values for required constructor arguments, by argument name. A new built-in class whose
# required argument is not here makes test_every_export_is_covered fail: add a sample.
_SAMPLES: dict[str, Any] = {
    "llm": lambda: FakeLLM(),
    "model": lambda: "some-org/some-model",
    "columns": lambda: ["instruction", "generation"],
    "data": lambda: [{"instruction": "one"}, {"instruction": "two"}],
    "num_instructions": lambda: 3,
    "action": lambda: "paraphrase",
    "num_rows": lambda: 4,
    "available_labels": lambda: ["positive", "negative"],
    "rubric": lambda: "factual-validity",
    "embeddings": lambda: SentenceTransformerEmbeddings(model="some/embedder", device="cpu"),
    "libpath": lambda: __file__,  # any existing .py file
    "target_language": lambda: "French",
}
# Required arguments whose sample depends on the class.
_CLASS_SAMPLES: dict[tuple[str, str], Any] = {
    ("ImageGeneration", "llm"): lambda: OpenAIImageGeneration(model="gpt-image-1"),
}


def _exports() -> list[tuple[str, type[BaseModel]]]:
    found: dict[str, type[BaseModel]] = {}
    for module in (steps_pkg, tasks_pkg, llms_pkg):
        for name in module.__all__:
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and issubclass(obj, (_Step, llms_pkg.LLM))
                and not inspect.isabstract(obj)
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.items())


EXPORTS = _exports()


def _build(cls: type[BaseModel]) -> BaseModel:
    kwargs = {}
    for field, info in cls.model_fields.items():
        if info.is_required():
            if (cls.__name__, field) in _CLASS_SAMPLES:
                kwargs[field] = _CLASS_SAMPLES[cls.__name__, field]()
                continue
            if field not in _SAMPLES:
                raise AssertionError(
                    f"{cls.__name__} requires {field!r}: add a sample value to _SAMPLES"
                )
            kwargs[field] = _SAMPLES[field]()
    if cls.__name__ == "PrometheusEval":
        kwargs["mode"] = "absolute"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**kwargs)


def _round_trip(pipeline: Pipeline, fmt: str, tmp_path: Path) -> Pipeline:
    path = pipeline.save(tmp_path / f"p.{fmt}")
    loader = Pipeline.from_json if fmt == "json" else Pipeline.from_yaml
    return loader(path)


def test_every_export_is_covered() -> None:
    names = {path.rsplit(".", 1)[1] for path, _ in EXPORTS}
    # the package exports what the issue lists; a missing one would silently shrink the test
    assert {"TextGeneration", "UltraFeedback", "LoadDataFromDicts", "KeepColumns"} <= names
    assert {"OpenAILLM", "AnthropicLLM", "TransformersLLM", "vLLM", "FakeLLM"} <= names
    assert len(EXPORTS) >= 45


@pytest.mark.parametrize(("path", "cls"), EXPORTS, ids=[p for p, _ in EXPORTS])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_of_every_builtin(
    path: str, cls: type[BaseModel], fmt: str, tmp_path: Path
) -> None:
    with Pipeline(name="round-trip") as pipeline:
        if issubclass(cls, llms_pkg.LLM):
            llm = _build(cls)
            step = TextGeneration(name="gen", llm=llm)
        else:
            step = _build(cls)  # type: ignore[assignment]
    loaded = _round_trip(pipeline, fmt, tmp_path)
    assert loaded.dump() == pipeline.dump()
    assert loaded.signature() == pipeline.signature()
    again = loaded.get_step(step.step_name)
    assert type(again) is type(step)
    if issubclass(cls, llms_pkg.LLM):
        assert type(again.llm) is cls  # type: ignore[attr-defined]


def test_connections_routing_and_runtime_parameters_survive(tmp_path: Path) -> None:
    with Pipeline(name="graph", description="three judges") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "a"}], batch_size=7)
        gens = [
            TextGeneration(name=f"gen_{i}", llm=FakeLLM(generation_kwargs={"temperature": 0.1 * i}))
            for i in range(3)
        ]
        keep = KeepColumns(name="keep", columns=["instruction", "generation"], input_batch_size=9)
        load >> sample_n_steps(2) >> gens
        gens >> keep  # type: ignore[operator]
    for fmt in ("yaml", "json"):
        loaded = _round_trip(pipeline, fmt, tmp_path)
        assert loaded.signature() == pipeline.signature()
        assert loaded.description == "three judges"
        assert loaded.dag.successors["load_data_from_dicts_0"] == ["gen_0", "gen_1", "gen_2"]
        assert loaded.dag.routing["load_data_from_dicts_0"].description == "sample_n_steps(2)"
        assert loaded.get_step("keep").input_batch_size == 9  # type: ignore[attr-defined]
        assert loaded.get_step("gen_2").llm.generation_kwargs == {"temperature": 0.2}  # type: ignore[attr-defined]
    # the loaded routing routes the same batches to the same steps
    routing = loaded.dag.routing["load_data_from_dicts_0"]
    original = pipeline.dag.routing["load_data_from_dicts_0"]
    names = ["gen_0", "gen_1", "gen_2"]
    assert [routing.route(names, i) for i in range(5)] == [
        original.route(names, i) for i in range(5)
    ]


def test_a_loaded_pipeline_resumes_the_stored_run(tmp_path: Path) -> None:
    with Pipeline(name="resume-from-file") as pipeline:
        LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(4)]) >> TextGeneration(
            name="gen", llm=FakeLLM()
        )
    first = pipeline.run(show_progress=False)
    loaded = Pipeline.from_yaml(pipeline.save(tmp_path / "p.yaml"))
    second = loaded.run(show_progress=False)
    assert second["default"]["train"]["generation"] == first["default"]["train"]["generation"]
    from alambic.pipeline.runs import list_runs

    runs = [r for r in list_runs() if r.pipeline_name == "resume-from-file"]
    assert len({r.pipeline_signature for r in runs}) == 1
    assert [r.run_id for r in runs] == [1, 2]
    assert runs[1].steps[-1].rows_this_run == 0  # answered from the first run's store


def test_api_key_becomes_its_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Pipeline(name="secret") as pipeline:
        TextGeneration(name="gen", llm=OpenAILLM(model="gpt-x", api_key="sk-very-secret-123"))
    text = pipeline.to_yaml()
    assert "sk-very-secret-123" not in text
    assert "sk-very-secret-123" not in pipeline.to_json()
    assert json.loads(pipeline.to_json())["pipeline"]["steps"][0]["step"]["llm"]["api_key"] == {
        "from_env": "OPENAI_API_KEY"
    }
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    loaded = Pipeline.from_yaml(text)
    llm = loaded.get_step("gen").llm  # type: ignore[attr-defined]
    assert llm.api_key is None
    assert llm.resolved_api_key() == "sk-from-env"
    assert loaded.signature() == pipeline.signature()


_CUSTOM = textwrap.dedent(
    """
    from alambic.steps import Step, StepInput
    from alambic.pipeline import routing_batch_function

    class Shout(Step):
        suffix: str = "!"

        @property
        def inputs(self):
            return ["text"]

        @property
        def outputs(self):
            return ["text"]

        def process(self, inputs: StepInput):
            yield [{**row, "text": row["text"].upper() + self.suffix} for row in inputs]

    @routing_batch_function
    def first_only(names):
        return names[:1]
    """
)


def _custom_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    (tmp_path / "my_custom_steps.py").write_text(_CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_custom_steps", raising=False)
    import my_custom_steps  # type: ignore[import-not-found]

    with Pipeline(name="custom") as pipeline:
        load = LoadDataFromDicts(data=[{"text": "hi"}])
        a = my_custom_steps.Shout(name="a", suffix="?")
        b = my_custom_steps.Shout(name="b")
        load >> my_custom_steps.first_only >> [a, b]
    return pipeline


def test_custom_modules_load_only_when_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _custom_pipeline(tmp_path, monkeypatch)
    text = pipeline.to_yaml()
    with pytest.raises(PipelineLoadError) as info:
        Pipeline.from_yaml(text)
    message = str(info.value)
    assert "my_custom_steps.Shout" in message
    assert "allow_modules=['my_custom_steps']" in message
    assert "--allow-module my_custom_steps" in message
    loaded = Pipeline.from_yaml(text, allow_modules=["my_custom_steps"])
    assert loaded.signature() == pipeline.signature()
    assert loaded.get_step("a").suffix == "?"  # type: ignore[attr-defined]
    distiset = loaded.run(show_progress=False, use_cache=False)
    assert distiset["a"]["train"]["text"] == ["HI?"]


def test_a_module_that_cannot_be_imported_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        _custom_pipeline(tmp_path, monkeypatch)
        .to_yaml()
        .replace("my_custom_steps", "gone_module_xyz")
    )
    with pytest.raises(PipelineLoadError) as info:
        Pipeline.from_yaml(text, allow_modules=["gone_module_xyz"])
    assert "module 'gone_module_xyz' cannot be imported" in str(info.value)
    assert "PYTHONPATH" in str(info.value)


def test_not_a_pipeline_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: text\n")
    with pytest.raises(PipelineLoadError, match="is not an alambic pipeline"):
        Pipeline.from_yaml(bad)
    with pytest.raises(PipelineLoadError, match="No pipeline file"):
        Pipeline.from_yaml(tmp_path / "missing.yaml")
    bad.write_text("pipeline: [unclosed\n")
    with pytest.raises(PipelineLoadError, match="not valid YAML"):
        Pipeline.from_yaml(bad)


def test_judge_task_with_settings(tmp_path: Path) -> None:
    with Pipeline(name="judge") as pipeline:
        UltraFeedback(name="uf", llm=FakeLLM(), aspect="honesty", input_batch_size=3)
    loaded = _round_trip(pipeline, "yaml", tmp_path)
    step = loaded.get_step("uf")
    assert step.aspect == "honesty"  # type: ignore[attr-defined]
    assert step.input_batch_size == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("alambic.pipeline.serialization", "importlib.import_module"),  # through a module
        ("alambic.pipeline.serialization", "json.loads"),
        ("alambic.steps.base", "BaseModel"),  # a class alambic imports, not its own
        ("alambic.pipeline.serialization", "save"),  # alambic's, but not a component class
    ],
)
def test_a_file_cannot_reach_beyond_alambic_components(module: str, name: str) -> None:
    text = textwrap.dedent(
        f"""
        pipeline:
          name: evil
          steps:
          - name: x
            step:
              type_info: {{module: {module}, name: {name}}}
              name: os
            connections: []
        """
    )
    with pytest.raises(PipelineLoadError):
        Pipeline.from_yaml(text)


_KEYED = [(p, c) for p, c in EXPORTS if "api_key" in c.model_fields]


@pytest.mark.parametrize(("path", "cls"), _KEYED, ids=[p for p, _ in _KEYED])
def test_no_api_key_is_ever_written(path: str, cls: type[BaseModel]) -> None:
    llm = _build(cls)
    llm.api_key = "sk-never-written-42"  # type: ignore[attr-defined]
    with Pipeline(name="keys") as pipeline:
        TextGeneration(name="gen", llm=llm)  # type: ignore[arg-type]
    for text in (pipeline.to_yaml(), pipeline.to_json()):
        assert "sk-never-written-42" not in text
    written = pipeline.dump()["pipeline"]["steps"][0]["step"]["llm"]["api_key"]
    env = getattr(cls, "api_key_env_var", None)
    assert written == ({"from_env": env} if env else None)
