"""What a run gives back: failures kept as rows, deterministic order with uneven latency,
``OpenAILLM`` end to end against the local test server, the Distiset round trip, and a
finished run returned again without new requests."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from alambic.distiset import Distiset
from alambic.errors import MissingColumnError
from alambic.llms.base import AsyncLLM
from alambic.llms.fake import FakeLLM
from alambic.llms.openai import OpenAILLM
from alambic.llms.typing import FormattedInput, GenerateOutput
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts, Step, StepInput, StepOutput
from alambic.steps.tasks.base import METADATA_COLUMN
from alambic.steps.tasks.text_generation import TextGeneration
from alambic.testing.openai_server import OpenAITestServer


def _instructions(n: int) -> list[dict[str, Any]]:
    return [{"instruction": f"q{i}"} for i in range(n)]


def _run(pipeline: Pipeline, **kwargs: Any) -> Any:
    kwargs.setdefault("use_cache", False)
    return pipeline.run(show_progress=False, **kwargs)


# -- failures are rows -----------------------------------------------------------------------


class FailOnBatch(Step):
    """Raises on the batch that holds row ``bad``; doubles ``i`` elsewhere."""

    bad: int = 3

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["double"]

    def process(self, inputs: StepInput) -> StepOutput:
        if any(r["i"] == self.bad for r in inputs):
            raise RuntimeError(f"cannot handle row {self.bad}")
        yield [{**r, "double": 2 * r["i"]} for r in inputs]


class After(Step):
    @property
    def inputs(self) -> list[str]:
        return ["double"]

    @property
    def outputs(self) -> list[str]:
        return ["seen"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "seen": r["double"] is not None} for r in inputs]


def test_a_step_that_raises_on_one_batch_leaves_rows_with_none_and_the_reason() -> None:
    with Pipeline(name="step-fails") as p:
        load = LoadDataFromDicts(name="load", data=[{"i": i} for i in range(7)], batch_size=3)
        fail = FailOnBatch(name="fail", input_batch_size=2)
        after = After(name="after", input_batch_size=3)
        load >> fail >> after
    rows = _run(p)["default"]["train"]
    assert rows["i"] == list(range(7))
    # rows 2 and 3 share the batch that raised
    assert rows["double"] == [0, 2, None, None, 8, 10, 12]
    assert rows["seen"] == [True, True, False, False, True, True, True]
    errors = [(m or {}).get("error_fail") for m in rows[METADATA_COLUMN]]
    assert errors[2] == {"type": "RuntimeError", "kind": "step", "message": "cannot handle row 3"}
    assert errors[3] == errors[2]
    assert [e is None for e in errors] == [True, True, False, False, True, True, True]
    summary = p.last_summary
    assert summary is not None
    assert summary["steps"]["fail"]["failed_rows"] == 2
    assert summary["steps"]["after"]["rows_out"] == 7


def test_a_task_keeps_the_rows_its_llm_failed_on() -> None:
    llm = FakeLLM(fail_on=["q2", "q5"])
    with Pipeline(name="task-fails") as p:
        load = LoadDataFromDicts(name="load", data=_instructions(7), batch_size=3)
        gen = TextGeneration(name="gen", llm=llm, input_batch_size=2)
        load >> gen
    rows = _run(p)["default"]["train"]
    assert rows["instruction"] == [f"q{i}" for i in range(7)]
    expected = [None if i in (2, 5) else f"fake reply to: q{i}" for i in range(7)]
    assert rows["generation"] == expected
    for i in (2, 5):
        error = rows[METADATA_COLUMN][i]["error_gen"]
        assert "told to fail on" in str(error)
    assert rows[METADATA_COLUMN][0].get("error_gen") is None
    assert rows["model_name"] == ["fake-model"] * 7
    summary = p.last_summary
    assert summary is not None
    assert summary["steps"]["gen"]["llm"]["failures"] == 2
    assert summary["steps"]["gen"]["llm"]["requests"] == 7
    assert summary["steps"]["gen"]["failed_rows"] == 2
    assert summary["steps"]["load"]["failed_rows"] == 0
    # a second run of the same task objects counts its own failures only
    p.run(use_cache=False, show_progress=False)
    assert p.last_summary is not None
    assert p.last_summary["steps"]["gen"]["failed_rows"] == 2


# -- deterministic order ---------------------------------------------------------------------


class JitterLLM(AsyncLLM):
    """Echoes the prompt after a pseudo-random delay per row, so replies finish out of order."""

    seed: int = 0

    @property
    def model_name(self) -> str:
        return "jitter"

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        assert isinstance(input, list)
        text = str(input[-1]["content"])
        await asyncio.sleep(random.Random(f"{self.seed}:{text}").uniform(0, 0.03))
        return {
            "generations": [f"echo {text}"] * num_generations,
            "statistics": {
                "input_tokens": [1] * num_generations,
                "output_tokens": [2] * num_generations,
            },
        }


class Upper(Step):
    @property
    def inputs(self) -> list[str]:
        return ["generation"]

    @property
    def outputs(self) -> list[str]:
        return ["upper"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "upper": r["generation"].upper()} for r in inputs]


def test_output_order_is_input_order_with_uneven_latency() -> None:
    results = []
    for seed in (1, 2):
        with Pipeline(name="order") as p:
            load = LoadDataFromDicts(name="load", data=_instructions(40), batch_size=7)
            gen = TextGeneration(name="gen", llm=JitterLLM(seed=seed), input_batch_size=3)
            upper = Upper(name="upper", input_batch_size=5)
            load >> gen >> upper
        rows = _run(p)["default"]["train"]
        results.append(rows["upper"])
        assert rows["instruction"] == [f"q{i}" for i in range(40)]
    assert results[0] == results[1] == [f"ECHO Q{i}" for i in range(40)]


# -- OpenAILLM against the local server ------------------------------------------------------


def test_openai_llm_end_to_end(openai_server: OpenAITestServer) -> None:
    llm = OpenAILLM(model="test-model", base_url=openai_server.base_url, max_concurrency=4)
    with Pipeline(name="openai") as p:
        load = LoadDataFromDicts(name="load", data=_instructions(12), batch_size=5)
        gen = TextGeneration(name="gen", llm=llm, input_batch_size=4, num_generations=2)
        upper = Upper(name="upper", input_batch_size=3, input_mappings={"generation": "generation"})
        load >> gen >> upper
    rows = _run(p)["default"]["train"]
    # one row per generation, in input order
    assert rows["instruction"] == [f"q{i}" for i in range(12) for _ in range(2)]
    assert rows["generation"] == [f"reply to: q{i}{s}" for i in range(12) for s in ("", " #1")]
    assert rows["upper"] == [g.upper() for g in rows["generation"]]
    assert rows["model_name"] == ["test-model"] * 24
    stats = openai_server.stats
    assert stats["paths"] == {"/v1/chat/completions": 12}  # n=2 in one request
    assert stats["max_in_flight"] <= 4
    statistics = rows[METADATA_COLUMN][0]["statistics_gen"]
    assert statistics == {"input_tokens": 1, "output_tokens": 3}


def test_openai_llm_failed_requests_are_rows(openai_server: OpenAITestServer) -> None:
    openai_server.update(status_sequence=[400])
    llm = OpenAILLM(model="test-model", base_url=openai_server.base_url, max_concurrency=1)
    with Pipeline(name="openai-fail") as p:
        load = LoadDataFromDicts(name="load", data=_instructions(3))
        gen = TextGeneration(name="gen", llm=llm)
        load >> gen
    rows = _run(p)["default"]["train"]
    assert rows["generation"] == [None, "reply to: q1", "reply to: q2"]
    assert "error_gen" in rows[METADATA_COLUMN][0]


def test_validation_errors_send_no_request_to_the_server(openai_server: OpenAITestServer) -> None:
    llm = OpenAILLM(model="test-model", base_url=openai_server.base_url)
    with Pipeline(name="openai-invalid") as p:
        load = LoadDataFromDicts(name="load", data=[{"prompt": "hi"}])
        gen = TextGeneration(name="gen", llm=llm)
        load >> gen
    with pytest.raises(MissingColumnError, match="'gen'"):
        _run(p)
    with Pipeline(name="openai-orphan") as p2:
        load2 = LoadDataFromDicts(name="load", data=_instructions(1))
        load2 >> TextGeneration(name="gen", llm=llm)
        TextGeneration(name="orphan", llm=llm)
    with pytest.raises(ValueError, match="'orphan' is not connected"):
        _run(p2)
    assert openai_server.stats["total_requests"] == 0


# -- Distiset round trip ---------------------------------------------------------------------


def test_distiset_save_and_load_round_trip(tmp_path: Path) -> None:
    with Pipeline(name="round-trip") as p:
        load = LoadDataFromDicts(name="load", data=_instructions(4), batch_size=3)
        a = TextGeneration(name="a", llm=FakeLLM(prefix="A: "))
        b = TextGeneration(name="b", llm=FakeLLM(prefix="B: "))
        load >> [a, b]
    distiset = _run(p)
    assert sorted(distiset) == ["a", "b"]
    saved = distiset.save_to_disk(tmp_path / "out")
    loaded = Distiset.load_from_disk(saved)
    assert sorted(loaded) == ["a", "b"]
    for leaf in ("a", "b"):
        original, again = distiset[leaf]["train"], loaded[leaf]["train"]
        assert again.column_names == original.column_names
        assert again.to_list() == original.to_list()
    assert loaded["b"]["train"]["generation"] == [f"B: q{i}" for i in range(4)]
    assert loaded.pipeline_yaml == distiset.pipeline_yaml
    assert "round-trip" in (loaded.pipeline_yaml or "")


# -- re-running a finished pipeline ----------------------------------------------------------


def _build_cached(llm: FakeLLM) -> Pipeline:
    with Pipeline(name="rerun") as p:
        load = LoadDataFromDicts(name="load", data=_instructions(5), batch_size=2)
        gen = TextGeneration(name="gen", llm=llm, input_batch_size=2)
        load >> gen
    return p


def test_rerunning_a_finished_pipeline_returns_its_rows_without_requests() -> None:
    llm = FakeLLM()
    pipeline = _build_cached(llm)
    first = pipeline.run(show_progress=False)["default"]["train"].to_list()
    assert len(llm.history) == 5
    again = pipeline.run(show_progress=False)["default"]["train"].to_list()
    assert again == first
    assert len(llm.history) == 5
    fresh_llm = FakeLLM()
    rebuilt = _build_cached(fresh_llm).run(show_progress=False)["default"]["train"].to_list()
    assert rebuilt == first
    assert fresh_llm.history == []


def test_use_cache_false_recomputes_the_rows() -> None:
    llm = FakeLLM()
    pipeline = _build_cached(llm)
    pipeline.run(show_progress=False)
    llm.enqueue(*[f"new {i}" for i in range(5)])
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"]
    # the request cache may still answer the repeated prompts; the rows are all there
    assert rows["instruction"] == [f"q{i}" for i in range(5)]
    assert len(rows["generation"]) == 5


def test_run_without_storage_gives_the_same_rows() -> None:
    llm = FakeLLM()
    rows = _build_cached(llm).run(storage=False, show_progress=False)["default"]["train"]
    assert rows["generation"] == [f"fake reply to: q{i}" for i in range(5)]
