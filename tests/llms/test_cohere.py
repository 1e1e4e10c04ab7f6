from __future__ import annotations

import json

import pytest

from alambic.llms.cohere import CohereLLM
from alambic.testing.cohere_server import CohereTestServer
from alambic.testing.provider_checks import HELLO, check_missing_key, check_missing_sdk, fast


@pytest.fixture
def server():
    with CohereTestServer() as srv:
        yield srv


def test_reply_text_and_token_statistics(server):
    llm = CohereLLM(model="command-test", base_url=server.url)
    llm.load()
    [out] = llm.generate([[{"role": "system", "content": "be brief"}, *HELLO]])
    assert out["generations"] == ["reply to: hello there"]
    assert out["statistics"] == {"input_tokens": [4], "output_tokens": [4]}
    assert server.paths == ["/v2/chat"]
    assert server.requests[0]["messages"][0] == {"role": "system", "content": "be brief"}


def test_generation_kwargs_use_cohere_names(server):
    llm = CohereLLM(model="command-test", base_url=server.url)
    [out] = llm.generate([HELLO], max_new_tokens=2, top_p=0.5, top_k=3, stop="x")
    assert out["generations"] == ["reply to:"]
    body = server.requests[0]
    assert (body["max_tokens"], body["p"], body["k"], body["stop_sequences"]) == (2, 0.5, 3, ["x"])


def test_several_generations_are_several_requests(server):
    llm = CohereLLM(model="command-test", base_url=server.url)
    [out] = llm.generate([HELLO], num_generations=2)
    assert out["generations"] == ["reply to: hello there"] * 2
    assert len(server.requests) == 2


def test_structured_output_uses_response_format(server):
    llm = CohereLLM(model="command-test", base_url=server.url)
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    [out] = llm.generate([(HELLO, {"schema": schema})])
    assert json.loads(out["generations"][0]) == {"label": "x"}
    assert server.requests[0]["response_format"] == {"type": "json_object", "json_schema": schema}


def test_rate_limit_is_retried():
    with CohereTestServer(status_sequence=[429, 503]) as server:
        llm = fast(CohereLLM(model="command-test", base_url=server.url))
        [out] = llm.generate([HELLO])
    assert out["generations"] == ["reply to: hello there"]
    assert server.statuses == [429, 503, 200]


def test_bad_key_fails_without_retry():
    with CohereTestServer(api_key="right") as server:
        llm = fast(CohereLLM(model="command-test", base_url=server.url, api_key="wrong"))
        [out] = llm.generate([HELLO])
    assert out["generations"] == [None]
    assert out["errors"][0]["kind"] == "authentication"
    assert server.statuses == [401]


def test_key_from_the_sdk_variable(monkeypatch):
    monkeypatch.setenv("CO_API_KEY", "from-env")
    assert CohereLLM(model="command-test").resolved_api_key() == "from-env"


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("CO_API_KEY", raising=False)
    check_missing_key(monkeypatch, CohereLLM(model="command-test"), "COHERE_API_KEY")


def test_missing_sdk_says_what_to_install(monkeypatch):
    check_missing_sdk(monkeypatch, CohereLLM(model="command-test"), "cohere", "cohere")
