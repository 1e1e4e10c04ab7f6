"""OpenAILLM against the local server: native structured output and rate-limit headers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from alambic.llms.openai import OpenAILLM
from alambic.llms.typing import FormattedInput
from alambic.steps.tasks.base import Task
from alambic.testing.openai_server import OpenAITestServer

pytestmark = pytest.mark.timeout(30)

Factory = Callable[..., OpenAITestServer]


class Verdict(BaseModel):
    label: str
    confidence: float


class Classify(Task):
    """A task that asks for a ``Verdict`` per row through ``format_input``."""

    @property
    def inputs(self) -> list[str]:
        return ["text"]

    @property
    def outputs(self) -> list[str]:
        return ["label"]

    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        return ([{"role": "user", "content": input["text"]}], {"format": "json", "schema": Verdict})

    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"label": Verdict.model_validate_json(output or "").label}


def test_native_response_format_is_sent_and_validated(openai_server_factory: Factory) -> None:
    server = openai_server_factory(record_requests=True)
    llm = OpenAILLM(model="m", base_url=server.base_url, structured_output=Verdict)
    llm.load()
    out = llm.generate([[{"role": "user", "content": "classify me"}]])[0]
    assert json.loads(out["generations"][0] or "") == {"label": "x", "confidence": 1.0}
    body = server.stats["requests"][0]["body"]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Verdict"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["label", "confidence"]
    assert body["messages"] == [{"role": "user", "content": "classify me"}]


def test_server_ignoring_the_schema_gets_reasked_then_fails_with_the_reason(
    openai_server_factory: Factory,
) -> None:
    server = openai_server_factory(record_requests=True, reply=lambda request, i: "plain prose")
    llm = OpenAILLM(
        model="m", base_url=server.base_url, structured_output=Verdict, structured_output_retries=2
    )
    llm.load()
    out = llm.generate([[{"role": "user", "content": "classify me"}]])[0]
    assert out["generations"] == [None]
    error = out["errors"][0]  # type: ignore[index]
    assert error is not None
    assert error["kind"] == "structured_output"
    assert "no JSON value" in error["message"]
    requests = server.stats["requests"]
    assert len(requests) == 3
    assert "previous answer was rejected" in requests[1]["body"]["messages"][-1]["content"]


def test_task_rows_with_a_schema_complete_or_fail_with_structured_output(
    openai_server_factory: Factory,
) -> None:
    def reply(request: dict[str, Any], i: int) -> str:
        text = request["messages"][-1]["content"]
        return "not json" if text.startswith("bad") else '{"label": "pos", "confidence": 0.9}'

    server = openai_server_factory(reply=reply)
    llm = OpenAILLM(model="m", base_url=server.base_url, structured_output_retries=1)
    task = Classify(llm=llm, name="classify")
    task.load()
    rows = next(task.process([{"text": "good one"}, {"text": "bad one"}]))
    assert rows[0]["label"] == "pos"
    assert rows[1]["label"] is None
    assert rows[1]["alambic_metadata"]["error_classify"]["kind"] == "structured_output"
    assert server.stats["total_requests"] == 3


def test_rpm_is_learned_from_rate_limit_headers(openai_server_factory: Factory) -> None:
    server = openai_server_factory(rpm_limit=600)
    llm = OpenAILLM(model="m", base_url=server.base_url)
    llm.load()
    llm.generate([[{"role": "user", "content": "hi"}]])
    budget = llm.scheduler.request_budget
    assert budget is not None
    assert budget.per_minute == pytest.approx(600)


def test_a_refusal_of_json_schema_is_told_apart_from_other_errors() -> None:
    from alambic.llms.openai import _rejects_json_schema, _response_format

    class Refusal(Exception):
        def __init__(self, status: int, text: str) -> None:
            super().__init__(f"Error code: {status}")
            self.status_code = status
            self.response = type("R", (), {"text": text})()

    llama_cpp = (
        "1 validation error: {'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
    )
    assert _rejects_json_schema(Refusal(500, llama_cpp))
    assert _rejects_json_schema(Refusal(400, "response_format json_schema is not supported"))
    assert not _rejects_json_schema(Refusal(500, "out of memory"))
    assert not _rejects_json_schema(Refusal(429, llama_cpp))
    assert not _rejects_json_schema(ValueError("response_format json_schema"))
    schema = {"name": "out", "schema": {"type": "object"}}
    assert _response_format(schema) == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": {"type": "object"}},
    }
    assert _response_format(schema, True) == {"type": "json_object", "schema": {"type": "object"}}
