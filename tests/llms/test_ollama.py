from __future__ import annotations

import json

import pytest

from alambic.llms.ollama import OllamaLLM
from alambic.testing.ollama_server import OllamaTestServer
from alambic.testing.provider_checks import HELLO, check_missing_sdk, fast


@pytest.fixture
def server():
    with OllamaTestServer() as srv:
        yield srv


def test_reply_text_and_token_statistics(server):
    llm = OllamaLLM(model="llama-test", base_url=server.url)
    llm.load()
    [out] = llm.generate([HELLO])
    assert out["generations"] == ["reply to: hello there"]
    assert out["statistics"] == {"input_tokens": [2], "output_tokens": [4]}
    assert server.paths == ["/api/chat"]
    assert server.requests[0]["stream"] is False


def test_generation_kwargs_go_into_options(server):
    llm = OllamaLLM(model="llama-test", base_url=server.url)
    [out] = llm.generate([HELLO], max_new_tokens=2, temperature=0.1, seed=7, stop="x")
    assert out["generations"] == ["reply to:"]
    assert server.requests[0]["options"] == {
        "num_predict": 2,
        "temperature": 0.1,
        "seed": 7,
        "stop": ["x"],
    }


def test_several_generations_are_several_requests(server):
    llm = OllamaLLM(model="llama-test", base_url=server.url)
    out = llm.generate([HELLO, HELLO], num_generations=2)
    assert [o["generations"] for o in out] == [["reply to: hello there"] * 2] * 2
    assert len(server.requests) == 4


def test_structured_output_uses_format(server):
    llm = OllamaLLM(model="llama-test", base_url=server.url)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    [out] = llm.generate([(HELLO, {"schema": schema})])
    assert json.loads(out["generations"][0]) == {"n": 1}
    assert server.requests[0]["format"] == schema


def test_server_error_is_retried():
    with OllamaTestServer(status_sequence=[500, 429]) as server:
        llm = fast(OllamaLLM(model="llama-test", base_url=server.url))
        [out] = llm.generate([HELLO])
    assert out["generations"] == ["reply to: hello there"]
    assert server.statuses == [500, 429, 200]


def test_bad_key_fails_without_retry():
    with OllamaTestServer(api_key="right") as server:
        llm = fast(OllamaLLM(model="llama-test", base_url=server.url, api_key="wrong"))
        [out] = llm.generate([HELLO])
    assert out["errors"][0]["kind"] == "authentication"
    assert server.statuses == [401]


def test_no_key_needed_and_default_host(monkeypatch):
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    llm = OllamaLLM(model="llama-test")
    llm.load()
    assert llm.resolved_base_url() == "http://localhost:11434"


def test_connection_refused_is_a_connection_error():
    llm = fast(OllamaLLM(model="llama-test", base_url="http://127.0.0.1:9", max_retries=1))
    [out] = llm.generate([HELLO])
    assert out["errors"][0]["kind"] == "connection"


def test_missing_sdk_says_what_to_install(monkeypatch):
    check_missing_sdk(monkeypatch, OllamaLLM(model="llama-test"), "ollama", "ollama")
