"""Reasoning traces: what a backend returns beside the reply (OpenAI-compatible
``reasoning_content`` / ``reasoning``, Anthropic thinking blocks) is kept per row in
``alambic_metadata`` (and, on request, a ``reasoning`` column), never mixed into the generation.
Real SDKs against local servers speaking each protocol."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alambic.llms._content import reasoning_of
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration
from alambic.testing.processes import free_port

Reply = Callable[[str, dict[str, Any]], dict[str, Any]]


def serve(reply: Reply) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            raw = json.dumps(reply(self.path, body)).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def openai_reply(path: str, body: dict[str, Any]) -> dict[str, Any]:
    question = body["messages"][-1]["content"]
    key = "reasoning" if "new-style" in question else "reasoning_content"
    message: dict[str, Any] = {"role": "assistant", "content": "Madrid."}
    if "no thinking" not in question:
        message[key] = f"The user asks: {question} Spain's capital is Madrid."
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


def anthropic_reply(path: str, body: dict[str, Any]) -> dict[str, Any]:
    assert path == "/v1/messages"
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [
            {"type": "thinking", "thinking": "Spain... its capital is Madrid.", "signature": "s"},
            {"type": "text", "text": "Madrid."},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }


@pytest.fixture
def openai_url() -> Iterator[str]:
    yield from serve(openai_reply)


@pytest.fixture
def anthropic_url() -> Iterator[str]:
    yield from serve(anthropic_reply)


def run(llm: Any, instructions: list[str], **task_kw: Any) -> list[dict[str, Any]]:
    with Pipeline(name="reasoning") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": i} for i in instructions])
        load >> TextGeneration(name="gen", llm=llm, **task_kw)
    return pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()


def test_openai_compatible_reasoning_is_kept_apart(openai_url: str) -> None:
    from alambic.llms.openai import OpenAILLM

    llm = OpenAILLM(model="r1", base_url=f"{openai_url}/v1", max_retries=0)
    rows = run(llm, ["Capital of Spain?", "new-style: Capital?", "no thinking: Capital?"])
    assert [r["generation"] for r in rows] == ["Madrid."] * 3
    metas = [r["alambic_metadata"] for r in rows]
    assert (
        metas[0]["reasoning_gen"] == "The user asks: Capital of Spain? Spain's capital is Madrid."
    )
    assert metas[1]["reasoning_gen"].startswith("The user asks: new-style")
    assert "reasoning_gen" not in metas[2] or metas[2]["reasoning_gen"] is None
    assert metas[0]["raw_output_gen"] == "Madrid."


def test_reasoning_column_on_request(openai_url: str) -> None:
    from alambic.llms.openai import OpenAILLM

    llm = OpenAILLM(model="r1", base_url=f"{openai_url}/v1", max_retries=0)
    task = TextGeneration(name="gen", llm=llm, add_reasoning_column=True)
    assert task.get_outputs() == {"generation": True, "reasoning": False, "model_name": True}
    rows = run(llm, ["Capital of Spain?", "no thinking: x"], add_reasoning_column=True)
    assert rows[0]["reasoning"].endswith("Spain's capital is Madrid.")
    assert rows[1]["reasoning"] is None
    assert rows[0]["generation"] == "Madrid."


def test_anthropic_thinking_blocks_are_kept_apart(anthropic_url: str) -> None:
    pytest.importorskip("anthropic")
    from alambic.llms.anthropic import AnthropicLLM

    llm = AnthropicLLM(model="claude-test", base_url=anthropic_url)
    rows = run(llm, ["Capital of Spain?"])
    assert rows[0]["generation"] == "Madrid."
    assert rows[0]["alambic_metadata"]["reasoning_gen"] == "Spain... its capital is Madrid."


def test_reasoning_of_reads_the_known_fields() -> None:
    assert reasoning_of({"content": "x", "reasoning_content": "because"}) == "because"
    assert reasoning_of({"reasoning": "since"}) == "since"
    assert reasoning_of({"reasoning_content": "  "}) is None
    assert reasoning_of(None) is None
