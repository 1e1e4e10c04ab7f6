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
        protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connections

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

    class Server(ThreadingHTTPServer):
        request_queue_size = 64  # a busy machine may be slow to accept

    server = Server(("127.0.0.1", free_port()), Handler)
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


def test_a_reply_from_the_request_cache_keeps_its_reasoning() -> None:
    from alambic.llms.openai import OpenAILLM

    seen: list[str] = []

    def counted(path: str, body: dict[str, Any]) -> dict[str, Any]:
        seen.append(path)
        return openai_reply(path, body)

    urls = serve(counted)
    url = next(urls)
    try:
        # retries: a connection error under load is retried (a request that never reached
        # the server is not counted)
        llm = OpenAILLM(model="r1", base_url=f"{url}/v1", max_retries=3)
        questions = ["Capital of Spain?", "no thinking: Capital?", "new-style: Capital?"]
        first = run(llm, questions, add_reasoning_column=True)
        assert len(seen) == 3
        # use_cache=False recomputes the step: every request is answered by the request cache
        again = run(llm, questions, add_reasoning_column=True)
        assert len(seen) == 3  # no request reached the server on the rerun
    finally:
        next(urls, None)
    assert again == first
    assert again[0]["alambic_metadata"]["reasoning_gen"].endswith("Spain's capital is Madrid.")
    assert again[2]["reasoning"].startswith("The user asks: new-style")
    assert again[1]["reasoning"] is None


def test_the_sync_engines_cache_keeps_reasoning() -> None:
    from alambic.llms.cache import InMemoryRequestCache
    from alambic.llms.outputs import from_cache, to_cache

    out: Any = {
        "generations": ["a", "b"],
        "statistics": {"input_tokens": [3, 3], "output_tokens": [1, 1]},
        "reasonings": ["why a", None],
    }
    cache = InMemoryRequestCache()
    cache.put_many(to_cache("k", out))
    back = from_cache(cache.get_many(["k:0", "k:1"]))
    assert back == out
    out.pop("reasonings")
    cache.put_many(to_cache("m", out))
    assert "reasonings" not in from_cache(cache.get_many(["m:0", "m:1"]))


def test_an_old_request_cache_file_gains_the_reasoning_column(tmp_path: Any) -> None:
    import sqlite3

    from alambic.pipeline.store.request_cache import (
        REQUEST_CACHE_APPLICATION_ID,
        REQUEST_CACHE_VERSION,
        RequestCacheStore,
    )

    path = tmp_path / "requests.sqlite"
    conn = sqlite3.connect(path)  # the layout written before reasoning was kept
    conn.execute(
        "CREATE TABLE requests (key TEXT PRIMARY KEY, text TEXT, input_tokens INTEGER, "
        "output_tokens INTEGER, created_at REAL NOT NULL)"
    )
    conn.execute("INSERT INTO requests VALUES ('old:0', 'hi', 1, 2, 0)")
    conn.execute(f"PRAGMA application_id={REQUEST_CACHE_APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version={REQUEST_CACHE_VERSION}")
    conn.commit()
    conn.close()
    store = RequestCacheStore.open(path)
    try:
        assert store.get_many(["old:0"]) == [{"text": "hi", "input_tokens": 1, "output_tokens": 2}]
        new = {"text": "yo", "input_tokens": 1, "output_tokens": 1, "reasoning": "because"}
        store.put_many([("new:0", new)])  # type: ignore[list-item]
        assert store.get_many(["new:0"]) == [new]
    finally:
        store.close()
    again = RequestCacheStore.open(path)  # reopening a migrated file changes nothing
    try:
        assert again.get_many(["new:0"])[0]["reasoning"] == "because"  # type: ignore[index]
    finally:
        again.close()


def test_anthropic_thinking_blocks_are_kept_apart(anthropic_url: str) -> None:
    pytest.importorskip("anthropic")
    from alambic.llms.anthropic import AnthropicLLM

    llm = AnthropicLLM(model="claude-test", base_url=anthropic_url)
    rows = run(llm, ["Capital of Spain?"])
    assert rows[0]["generation"] == "Madrid."
    assert rows[0]["alambic_metadata"]["reasoning_gen"] == "Spain... its capital is Madrid."


def test_gemini_thought_summaries_are_kept_apart() -> None:
    from alambic.llms.vertexai import VertexAILLM
    from alambic.testing.gemini_server import GeminiTestServer

    with GeminiTestServer() as server:
        thinking = {"thinking_config": {"include_thoughts": True}}
        llm = VertexAILLM(model="gemini-test", base_url=server.url, generation_kwargs=thinking)
        rows = run(llm, ["Capital of Spain?"], add_reasoning_column=True)
        plain = VertexAILLM(model="gemini-test", base_url=server.url)
        [out] = plain.generate([[{"role": "user", "content": "hi"}]])
    assert rows[0]["generation"] == "reply to: Capital of Spain?"
    assert rows[0]["reasoning"] == "thinking about: Capital of Spain?"
    assert rows[0]["alambic_metadata"]["reasoning_gen"] == rows[0]["reasoning"]
    sent = server.requests[0]["generationConfig"]["thinkingConfig"]
    assert True in (sent.get("includeThoughts"), sent.get("include_thoughts"))
    assert "reasonings" not in out


def test_reasoning_of_reads_the_known_fields() -> None:
    assert reasoning_of({"content": "x", "reasoning_content": "because"}) == "because"
    assert reasoning_of({"reasoning": "since"}) == "since"
    assert reasoning_of({"reasoning_content": "  "}) is None
    assert reasoning_of(None) is None
