"""The Task contract: row shapes, metadata, num_generations, grouping, failures as data."""

from __future__ import annotations

from typing import Any

import pytest

from alambic.llms import FakeLLM
from alambic.steps.tasks import ChatType, GeneratorTask, Task
from alambic.steps.typing import StepColumns


class Echo(Task):
    @property
    def inputs(self) -> StepColumns:
        return ["input_field"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        return [{"role": "user", "content": input["input_field"]}]

    @property
    def outputs(self) -> StepColumns:
        return ["output_field"]

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is not None and "boom" in output:
            raise ValueError("cannot parse a boom")
        return {"output_field": output}


def test_outputs_always_end_with_model_name() -> None:
    assert list(Echo(llm=FakeLLM()).get_outputs()) == ["output_field", "model_name"]


def test_row_shape_with_raw_output_raw_input_and_statistics() -> None:
    task = Echo(name="echo", llm=FakeLLM(model="m"))
    task.load()
    rows = next(task.process([{"input_field": "hello there"}]))
    assert rows == [
        {
            "input_field": "hello there",
            "output_field": "fake reply to: hello there",
            "alambic_metadata": {
                "raw_output_echo": "fake reply to: hello there",
                "raw_input_echo": [{"role": "user", "content": "hello there"}],
                "statistics_echo": {"input_tokens": 2, "output_tokens": 5},
            },
            "model_name": "m",
        }
    ]


def test_raw_output_and_input_can_be_disabled() -> None:
    task = Echo(name="echo", llm=FakeLLM(), add_raw_output=False, add_raw_input=False)
    task.load()
    row = next(task.process([{"input_field": "x"}]))[0]
    assert row["alambic_metadata"] == {"statistics_echo": {"input_tokens": 1, "output_tokens": 4}}


def test_num_generations_gives_one_row_each() -> None:
    task = Echo(name="echo", llm=FakeLLM(), num_generations=3)
    task.load()
    rows = next(task.process([{"input_field": "q"}, {"input_field": "r"}]))
    assert [r["output_field"] for r in rows] == [
        "fake reply to: q",
        "fake reply to: q #1",
        "fake reply to: q #2",
        "fake reply to: r",
        "fake reply to: r #1",
        "fake reply to: r #2",
    ]
    assert all(isinstance(r["alambic_metadata"], dict) for r in rows)


def test_grouped_generations_are_lists_and_model_name_stays_scalar() -> None:
    task = Echo(name="echo", llm=FakeLLM(model="m"), num_generations=2, group_generations=True)
    task.load()
    [row] = next(task.process([{"input_field": "q"}]))
    assert row["output_field"] == ["fake reply to: q", "fake reply to: q #1"]
    assert row["model_name"] == "m"
    assert [m["raw_output_echo"] for m in row["alambic_metadata"]] == row["output_field"]
    assert list(row) == ["input_field", "output_field", "alambic_metadata", "model_name"]


def test_a_failed_request_keeps_the_row_with_the_reason() -> None:
    llm = FakeLLM(fail_on=["bad"])
    task = Echo(name="echo", llm=llm)
    task.load()
    good, bad = next(task.process([{"input_field": "good"}, {"input_field": "bad one"}]))
    assert good["output_field"] == "fake reply to: good"
    assert bad["output_field"] is None
    error = bad["alambic_metadata"]["error_echo"]
    assert error["kind"] == "bad_request"
    assert "told to fail" in error["message"]
    assert task.failures == 1


def test_a_reply_format_output_cannot_parse_is_a_failed_row() -> None:
    llm = FakeLLM()
    llm.enqueue("boom")
    task = Echo(name="echo", llm=llm)
    task.load()
    [row] = next(task.process([{"input_field": "x"}]))
    assert row["output_field"] is None
    assert row["alambic_metadata"]["raw_output_echo"] == "boom"
    assert row["alambic_metadata"]["error_echo"] == {
        "type": "ValueError",
        "kind": "format_output",
        "message": "cannot parse a boom",
    }


def test_existing_metadata_is_merged() -> None:
    task = Echo(name="echo", llm=FakeLLM(), add_raw_input=False)
    task.load()
    [row] = next(task.process([{"input_field": "x", "alambic_metadata": {"raw_output_prev": "p"}}]))
    assert row["alambic_metadata"]["raw_output_prev"] == "p"
    assert row["alambic_metadata"]["raw_output_echo"] == "fake reply to: x"


def test_missing_llm_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="llm"):
        Echo(name="echo")  # type: ignore[call-arg]


class Joke(GeneratorTask):
    instruction: str

    def process(self, offset: int = 0) -> Any:
        outputs = self.llm.generate([[{"role": "user", "content": self.instruction}]])
        text = outputs[0]["generations"][0]
        yield [{**self.format_output(text), "model_name": self.llm.model_name}]

    @property
    def outputs(self) -> StepColumns:
        return ["output_field", "model_name"]

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"output_field": output}


def test_generator_task_in_the_documented_correct_form() -> None:
    task = Joke(name="joke", instruction="Tell me a joke.", llm=FakeLLM(model="m"))
    task.load()
    assert next(task.process()) == [
        {"output_field": "fake reply to: Tell me a joke.", "model_name": "m"}
    ]
