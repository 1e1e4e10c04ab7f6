from __future__ import annotations

import json

import pytest

from alambic.llms.anthropic import AnthropicLLM, to_anthropic_messages
from alambic.testing.anthropic_server import AnthropicTestServer
from alambic.testing.provider_checks import HELLO, check_missing_key, check_missing_sdk, fast


@pytest.fixture
def server():
    with AnthropicTestServer() as srv:
        yield srv


def test_reply_text_and_token_statistics(server):
    llm = AnthropicLLM(model="claude-test", base_url=server.url)
    llm.load()
    [out] = llm.generate([[{"role": "system", "content": "be brief"}, *HELLO]])
    assert out["generations"] == ["reply to: hello there"]
    assert out["statistics"] == {"input_tokens": [4], "output_tokens": [4]}
    body = server.requests[0]
    assert body["system"] == "be brief"
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert body["max_tokens"] == 1024


def test_generation_kwargs_are_renamed(server):
    llm = AnthropicLLM(model="claude-test", base_url=server.url)
    [out] = llm.generate([HELLO], max_new_tokens=2, stop="x", temperature=0.5)
    assert out["generations"] == ["reply to:"]
    body = server.requests[0]
    assert body["max_tokens"] == 2
    assert body["stop_sequences"] == ["x"]
    assert body["temperature"] == 0.5


def test_several_generations_are_several_requests(server):
    llm = AnthropicLLM(model="claude-test", base_url=server.url)
    [out] = llm.generate([HELLO], num_generations=3)
    assert out["generations"] == ["reply to: hello there"] * 3
    assert len(server.requests) == 3


def test_structured_output_uses_a_forced_tool(server):
    llm = AnthropicLLM(model="claude-test", base_url=server.url)
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    [out] = llm.generate([(HELLO, {"schema": schema})])
    assert json.loads(out["generations"][0]) == {"score": 1}
    body = server.requests[0]
    assert body["tool_choice"] == {"type": "tool", "name": "output"}
    assert body["tools"][0]["input_schema"] == schema


def test_rate_limit_is_retried_after_retry_after():
    with AnthropicTestServer(status_sequence=[429], retry_after_s=0.05) as server:
        llm = fast(AnthropicLLM(model="claude-test", base_url=server.url))
        [out] = llm.generate([HELLO])
    assert out["generations"] == ["reply to: hello there"]
    assert server.statuses == [429, 200]
    assert llm.scheduler.counters.rate_limited == 1


def test_bad_key_fails_the_generation_without_retry():
    with AnthropicTestServer(api_key="right") as server:
        llm = fast(AnthropicLLM(model="claude-test", base_url=server.url, api_key="wrong"))
        [out] = llm.generate([HELLO])
    assert out["generations"] == [None]
    assert out["errors"][0]["kind"] == "authentication"
    assert server.statuses == [401]


def test_right_key_is_sent_as_x_api_key():
    with AnthropicTestServer(api_key="right") as server:
        llm = AnthropicLLM(model="claude-test", base_url=server.url, api_key="right")
        [out] = llm.generate([HELLO])
    assert out["generations"] == ["reply to: hello there"]


def test_missing_key_names_the_variable(monkeypatch):
    check_missing_key(monkeypatch, AnthropicLLM(model="claude-test"), "ANTHROPIC_API_KEY")


def test_missing_sdk_says_what_to_install(monkeypatch):
    check_missing_sdk(monkeypatch, AnthropicLLM(model="claude-test"), "anthropic", "anthropic")


def test_system_messages_are_joined():
    system, turns = to_anthropic_messages(
        [
            {"role": "system", "content": "a"},
            {"role": "system", "content": "b"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "r"},
        ]
    )
    assert system == "a\n\nb"
    assert [t["role"] for t in turns] == ["user", "assistant"]
