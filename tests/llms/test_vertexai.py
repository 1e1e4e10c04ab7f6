from __future__ import annotations

import json

import pytest

from alambic.llms.vertexai import VertexAILLM, to_gemini_contents
from alambic.testing.gemini_server import GeminiTestServer
from alambic.testing.provider_checks import HELLO, check_missing_key, check_missing_sdk, fast


@pytest.fixture
def server():
    with GeminiTestServer() as srv:
        yield srv


def test_reply_text_and_token_statistics(server):
    llm = VertexAILLM(model="gemini-test", base_url=server.url)
    llm.load()
    [out] = llm.generate([[{"role": "system", "content": "be brief"}, *HELLO]])
    assert out["generations"] == ["reply to: hello there"]
    assert out["statistics"] == {"input_tokens": [4], "output_tokens": [4]}
    assert server.paths[0].endswith("/models/gemini-test:generateContent")
    body = server.requests[0]
    assert body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hello there"}]}]


def test_several_generations_use_candidate_count(server):
    llm = VertexAILLM(model="gemini-test", base_url=server.url)
    [out] = llm.generate([HELLO], num_generations=3, max_new_tokens=50)
    assert out["generations"] == [
        "reply to: hello there",
        "reply to: hello there #1",
        "reply to: hello there #2",
    ]
    assert out["statistics"]["output_tokens"] == [4, 4, 4]
    config = server.requests[0]["generationConfig"]
    assert (config["candidateCount"], config["maxOutputTokens"]) == (3, 50)
    assert len(server.requests) == 1


def test_structured_output_uses_a_json_schema(server):
    llm = VertexAILLM(model="gemini-test", base_url=server.url)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    [out] = llm.generate([(HELLO, {"schema": schema})])
    assert json.loads(out["generations"][0]) == {"ok": True}
    config = server.requests[0]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == schema


def test_rate_limit_is_retried():
    with GeminiTestServer(status_sequence=[429]) as server:
        llm = fast(VertexAILLM(model="gemini-test", base_url=server.url))
        [out] = llm.generate([HELLO])
    assert out["generations"] == ["reply to: hello there"]
    assert server.statuses == [429, 200]
    assert llm.scheduler.counters.rate_limited == 1


def test_bad_key_fails_without_retry():
    with GeminiTestServer(api_key="right") as server:
        llm = fast(VertexAILLM(model="gemini-test", base_url=server.url, api_key="wrong"))
        [out] = llm.generate([HELLO])
    assert out["generations"] == [None]
    assert out["errors"][0]["kind"] == "authentication"
    assert server.statuses == [401]


def test_key_sent_as_goog_api_key():
    with GeminiTestServer(api_key="right") as server:
        llm = VertexAILLM(model="gemini-test", base_url=server.url, api_key="right")
        [out] = llm.generate([HELLO])
    assert out["generations"] == ["reply to: hello there"]


def test_missing_key_names_the_variable(monkeypatch):
    check_missing_key(monkeypatch, VertexAILLM(model="gemini-test"), "GOOGLE_API_KEY")


def test_vertex_ai_mode_needs_no_key():
    assert VertexAILLM(model="gemini-test", vertexai=True).resolved_api_key() is None


def test_missing_sdk_says_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "google.genai", None)
    check_missing_sdk(monkeypatch, VertexAILLM(model="gemini-test"), "google.genai", "vertexai")


def test_assistant_turns_become_model_turns():
    system, contents = to_gemini_contents(
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    )
    assert system is None
    assert [c["role"] for c in contents] == ["user", "model"]
