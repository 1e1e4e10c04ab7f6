"""Tests of the fake OpenAI-compatible server, through raw HTTP and the official SDK.

Raw ``http.client`` checks exact status codes, headers and bodies; the ``openai`` SDK
checks that real clients map our faults to the exceptions alambic handles.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import openai
import pydantic
import pytest

from alambic.testing.openai_server import (
    OpenAITestServer,
    ServerConfig,
    _parse_args,
    remote_reset,
    remote_stats,
    remote_update,
    run_server_process,
    schema_instance,
    stop_server_process,
)

Factory = Callable[..., OpenAITestServer]
CHAT = "/v1/chat/completions"


class Raw:
    """A keep-alive raw HTTP client: exact statuses, headers and bodies."""

    def __init__(self, server: OpenAITestServer) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"content-type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=data, headers=hdrs)
        resp = self.conn.getresponse()
        return resp.status, resp.headers, resp.read()

    def chat(self, content: str = "hello world", **extra: Any) -> tuple[int, Any, Any]:
        body = {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
        status, headers, raw = self.request("POST", CHAT, body)
        return status, headers, json.loads(raw)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def raw(openai_server: OpenAITestServer) -> Iterator[Raw]:
    client = Raw(openai_server)
    yield client
    client.close()


def sdk(server: OpenAITestServer, **kwargs: Any) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=server.base_url, api_key="test", **kwargs)


def user(content: str) -> Any:
    """One user message (typed ``Any``: the SDK wants its TypedDict message params)."""
    return [{"role": "user", "content": content}]


# --------------------------------------------------------------------------- replies


def test_chat_reply_shape_and_usage(raw: Raw) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second question here"},
    ]
    status, headers, data = raw.chat(messages=messages)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert set(data) == {"id", "object", "created", "model", "choices", "usage"}
    assert data["object"] == "chat.completion"
    assert data["model"] == "m"
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "reply to: second question here"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    # prompt: 2 + 2 + 2 + 3 words; completion: "reply to: second question here" = 5
    assert data["usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}


def test_n_choices_and_honour_n(openai_server: OpenAITestServer) -> None:
    client = sdk(openai_server)
    resp = client.chat.completions.create(model="m", messages=user("hi"), n=3)
    assert [c.message.content for c in resp.choices] == [
        "reply to: hi",
        "reply to: hi #1",
        "reply to: hi #2",
    ]
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 3 + 4 + 4

    openai_server.update(honour_n=False)
    resp = client.chat.completions.create(model="m", messages=user("hi"), n=3)
    assert [c.message.content for c in resp.choices] == ["reply to: hi"]


def test_max_tokens_truncates_words(raw: Raw) -> None:
    _, _, data = raw.chat("one two three four", max_tokens=3)
    choice = data["choices"][0]
    assert choice["message"]["content"] == "reply to: one"
    assert choice["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3
    _, _, data = raw.chat("one two", max_completion_tokens=2, max_tokens=50)
    assert data["choices"][0]["message"]["content"] == "reply to:"
    _, _, data = raw.chat("x", max_tokens=50)
    assert data["choices"][0]["finish_reason"] == "stop"


def test_reply_callable(openai_server_factory: Factory) -> None:
    def reply(request: dict[str, Any], index: int) -> str:
        return f"{request['model']}:{index}:{request['messages'][-1]['content'].upper()}"

    server = openai_server_factory(reply=reply)
    resp = sdk(server).chat.completions.create(model="mm", messages=user("abc"), n=2)
    assert [c.message.content for c in resp.choices] == ["mm:0:ABC", "mm:1:ABC"]


def test_streaming_reassembles(openai_server: OpenAITestServer) -> None:
    client = sdk(openai_server)
    stream = client.chat.completions.create(
        model="m",
        messages=user("tell me  a story"),
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts: dict[int, str] = {0: "", 1: ""}
    finish: dict[int, str | None] = {}
    usage = None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert parts == {0: "reply to: tell me  a story", 1: "reply to: tell me  a story #1"}
    assert finish == {0: "stop", 1: "stop"}
    assert usage is not None
    assert usage.prompt_tokens == 4
    assert usage.completion_tokens == 6 + 7


def test_streaming_raw_sse_ends_with_done(raw: Raw) -> None:
    body = {"model": "m", "messages": user("a b"), "stream": True, "max_tokens": 2}
    status, headers, data = raw.request("POST", CHAT, body)
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    events = [e for e in data.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "reply to:"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_delay_spaces_chunks(openai_server_factory: Factory) -> None:
    server = openai_server_factory(stream_delay_s=0.05)
    stream = sdk(server).chat.completions.create(model="m", messages=user("x"), stream=True)
    start = time.perf_counter()
    arrivals = [time.perf_counter() - start for _ in stream]
    assert len(arrivals) == 5  # role, "reply", " to:", " x", finish
    assert arrivals[-1] - arrivals[0] >= 0.15


def test_legacy_completions(openai_server: OpenAITestServer) -> None:
    client = sdk(openai_server)
    resp = client.completions.create(model="m", prompt="the prompt", n=2)
    assert resp.object == "text_completion"
    assert [c.text for c in resp.choices] == ["reply to: the prompt", "reply to: the prompt #1"]
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 2
    resp = client.completions.create(model="m", prompt="a b c", max_tokens=2)
    assert resp.choices[0].text == "reply to:"
    assert resp.choices[0].finish_reason == "length"
    stream = client.completions.create(model="m", prompt="p q", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "reply to: p q"


def test_embeddings_deterministic(openai_server: OpenAITestServer, raw: Raw) -> None:
    client = sdk(openai_server)
    # The SDK asks for base64 and decodes it (float32), so compare approximately.
    resp = client.embeddings.create(model="e", input=["alpha", "beta words"])
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in resp.data)
    assert resp.usage.prompt_tokens == 3
    status, _, body = raw.request("POST", "/v1/embeddings", {"model": "e", "input": "alpha"})
    floats = json.loads(body)["data"][0]["embedding"]
    assert status == 200
    assert floats == pytest.approx(resp.data[0].embedding, abs=1e-6)
    assert sum(v * v for v in floats) == pytest.approx(1.0, abs=1e-4)
    assert resp.data[0].embedding != resp.data[1].embedding
    resp = client.embeddings.create(model="e", input="alpha", dimensions=4)
    assert len(resp.data[0].embedding) == 4


def test_models_endpoint(openai_server: OpenAITestServer) -> None:
    models = sdk(openai_server).models.list()
    assert [m.id for m in models.data] == ["test-model"]


class Pet(pydantic.BaseModel):
    name: str
    age: int
    kind: Literal["cat", "dog"]


class Owner(pydantic.BaseModel):
    owner: str
    pets: list[Pet]
    score: float
    nickname: str | None = None
    active: bool


def test_structured_output_minimal_instance(openai_server: OpenAITestServer) -> None:
    client = sdk(openai_server)
    resp = client.chat.completions.parse(
        model="m", messages=user("json please"), response_format=Owner
    )
    parsed = resp.choices[0].message.parsed
    assert parsed == Owner(
        owner="x", pets=[Pet(name="x", age=1, kind="cat")], score=1.0, nickname="x", active=True
    )
    raw_resp = client.chat.completions.create(
        model="m",
        messages=user("obj"),
        response_format={"type": "json_object"},
    )
    assert json.loads(raw_resp.choices[0].message.content or "") == {"reply": "reply to: obj"}


def test_schema_instance_edge_cases() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 5},
            "m": {"type": "number", "exclusiveMaximum": 0},
            "when": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "c": {"const": 7},
            "nothing": {"type": "null"},
            "opt": {"type": ["null", "boolean"]},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
        },
    }
    assert schema_instance(schema) == {
        "n": 5,
        "m": -1.0,
        "when": "2024-01-01",
        "tags": ["x", "x"],
        "c": 7,
        "nothing": None,
        "opt": True,
        "pair": [1, "x"],
    }


# --------------------------------------------------------------------------- faults


def test_429_with_and_without_retry_after(openai_server_factory: Factory) -> None:
    server = openai_server_factory(rate_429=1.0, retry_after_s=2)
    raw = Raw(server)
    status, headers, data = raw.chat()
    assert status == 429
    assert headers["retry-after"] == "2"
    assert data["error"]["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError) as info:
        sdk(server).chat.completions.create(model="m", messages=user("x"))
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"

    server.update(retry_after_s=None)
    status, headers, _ = raw.chat()
    assert status == 429
    assert "retry-after" not in headers
    raw.close()


def test_sdk_waits_retry_after_then_succeeds(openai_server_factory: Factory) -> None:
    server = openai_server_factory(status_sequence=[429, 200], retry_after_s=0.3)
    start = time.perf_counter()
    resp = sdk(server, max_retries=1).chat.completions.create(model="m", messages=user("x"))
    elapsed = time.perf_counter() - start
    assert resp.choices[0].message.content == "reply to: x"
    assert 0.3 <= elapsed < 1.5  # the SDK slept the (fractional) Retry-After, not its backoff
    assert server.stats["statuses"] == {429: 1, 200: 1}


def test_status_sequence_then_fail_first_n(openai_server_factory: Factory) -> None:
    server = openai_server_factory(status_sequence=[429, 503, 200, 400], fail_first_n=2)
    raw = Raw(server)
    statuses = [raw.chat()[0] for _ in range(7)]
    assert statuses == [429, 503, 200, 400, 500, 500, 200]
    server.update(status_sequence=[502])  # restarts the script
    assert [raw.chat()[0] for _ in range(4)] == [502, 500, 500, 200]
    raw.close()


def test_rpm_limit_sliding_window(openai_server_factory: Factory) -> None:
    server = openai_server_factory(rpm_limit=30)
    raw = Raw(server)
    remaining = []
    for _ in range(30):
        status, headers, _ = raw.chat()
        assert status == 200
        assert headers["x-ratelimit-limit-requests"] == "30"
        remaining.append(int(headers["x-ratelimit-remaining-requests"]))
    assert remaining == list(range(29, -1, -1))
    status, headers, body = raw.chat()
    assert status == 429
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert 59 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert server.stats["statuses"] == {200: 30, 429: 1}
    raw.close()


def test_rpm_window_slides(openai_server_factory: Factory) -> None:
    server = openai_server_factory(rpm_limit=2, rate_window_s=0.3)
    raw = Raw(server)
    assert [raw.chat()[0] for _ in range(3)] == [200, 200, 429]
    time.sleep(0.35)
    assert raw.chat()[0] == 200
    raw.close()


def test_tpm_limit(openai_server_factory: Factory) -> None:
    # each request: 2 prompt words + 4 reply words = 6 tokens
    server = openai_server_factory(tpm_limit=20)
    raw = Raw(server)
    results = [raw.chat("a b") for _ in range(4)]
    assert [r[0] for r in results] == [200, 200, 200, 429]
    assert results[0][1]["x-ratelimit-limit-tokens"] == "20"
    assert results[0][1]["x-ratelimit-remaining-tokens"] == "14"
    assert results[2][1]["x-ratelimit-remaining-tokens"] == "2"
    assert "retry-after" in results[3][1]
    raw.close()


def test_wrong_api_key_is_401(openai_server_factory: Factory) -> None:
    server = openai_server_factory(api_key="sekret")
    with pytest.raises(openai.AuthenticationError) as info:
        sdk(server).chat.completions.create(model="m", messages=user("x"))
    assert info.value.status_code == 401
    good = openai.OpenAI(base_url=server.base_url, api_key="sekret", max_retries=0)
    assert good.chat.completions.create(model="m", messages=user("x")).choices
    assert server.stats["statuses"] == {401: 1, 200: 1}


def test_500_drop_truncated_map_to_sdk_errors(openai_server_factory: Factory) -> None:
    server = openai_server_factory(failure_rate=1.0)
    client = sdk(server)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=user("x"))
    server.update(failure_rate=0.0, drop_rate=1.0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=user("x"))
    server.update(drop_rate=0.0, truncated_rate=1.0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=user("x"))
    stream = client.chat.completions.create(model="m", messages=user("a b c d e f"), stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):  # cut mid-stream, after some chunks
        received.extend(stream)
    assert received
    stats = server.stats
    assert stats["dropped"] == 1
    assert stats["statuses"] == {500: 1, 200: 2}  # the truncated replies were 200s


def test_malformed_body(openai_server_factory: Factory) -> None:
    server = openai_server_factory(malformed_rate=1.0)
    raw = Raw(server)
    status, _, body = raw.request("POST", CHAT, {"model": "m", "messages": user("x")})
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    # The SDK lets the JSON decoding error escape (it is not an openai.APIError).
    with pytest.raises(json.JSONDecodeError):
        sdk(server).chat.completions.create(model="m", messages=user("x"))
    raw.close()


def test_hang_until_client_timeout(openai_server_factory: Factory) -> None:
    server = openai_server_factory(hang_rate=1.0)
    with pytest.raises(openai.APITimeoutError):
        sdk(server, timeout=0.2).chat.completions.create(model="m", messages=user("x"))
    deadline = time.monotonic() + 2
    while server.stats["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats["in_flight"] == 0  # the client's close ended the hang
    assert server.stats["hung"] == 1


def test_stop_aborts_hung_connections() -> None:
    server = OpenAITestServer(hang_rate=1.0)
    server.start()
    body = json.dumps({"model": "m", "messages": user("x")}).encode()
    head = f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        while server.stats["in_flight"] == 0:
            time.sleep(0.01)
        start = time.perf_counter()
        server.stop()
        assert time.perf_counter() - start < 3.0  # the hang itself never ends
        assert sock.recv(1024) == b""  # closed without an answer


def test_seeded_faults_are_reproducible(openai_server_factory: Factory) -> None:
    def pattern(server: OpenAITestServer) -> list[int]:
        raw = Raw(server)
        out = [raw.chat()[0] for _ in range(40)]
        raw.close()
        return out

    first = pattern(openai_server_factory(failure_rate=0.3, rate_429=0.2, seed=7))
    second = pattern(openai_server_factory(failure_rate=0.3, rate_429=0.2, seed=7))
    other = pattern(openai_server_factory(failure_rate=0.3, rate_429=0.2, seed=8))
    assert first == second
    assert first != other
    assert {500, 429, 200} == set(first)


def test_latency_and_concurrency_stats(openai_server_factory: Factory) -> None:
    server = openai_server_factory(latency_s=0.2)
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)

    async def burst() -> list[str | None]:
        async with client:
            tasks = [
                client.chat.completions.create(model="m", messages=user(str(i))) for i in range(8)
            ]
            return [r.choices[0].message.content for r in await asyncio.gather(*tasks)]

    start = time.perf_counter()
    replies = asyncio.run(burst())
    elapsed = time.perf_counter() - start
    assert replies == [f"reply to: {i}" for i in range(8)]
    assert 0.2 <= elapsed < 1.5  # concurrent, not 8 x 0.2 s
    stats = server.stats
    assert stats["max_in_flight"] == 8
    assert stats["in_flight"] == 0
    assert len(stats["arrivals"]) == 8
    assert stats["arrivals"] == sorted(stats["arrivals"])
    assert stats["arrivals"][-1] - stats["arrivals"][0] < 0.2
    # when each request ended: 0.2 s after the burst came, so all 8 were in flight together
    departures = stats["departures"]
    assert len(departures) == 8
    assert min(departures) >= max(stats["arrivals"])
    assert 0.2 <= min(departures) - stats["arrivals"][0] < 1.0


def test_stats_counters_repeats_record_and_reset(openai_server_factory: Factory) -> None:
    server = openai_server_factory(record_requests=True)
    raw = Raw(server)
    a = {"model": "m", "messages": user("same"), "temperature": 0.5}
    b = {"temperature": 0.5, "messages": user("same"), "model": "m"}  # same, other key order
    raw.request("POST", CHAT, a)
    raw.request("POST", CHAT, b)
    raw.request("POST", CHAT, {"model": "m", "messages": user("different")})
    raw.request("POST", CHAT, a)
    raw.request("GET", "/v1/models")
    raw.request("GET", "/v1/nope")
    raw.request("GET", "/_stats")  # control endpoints are not counted
    stats = server.stats
    assert stats["total_requests"] == 6
    assert stats["paths"] == {CHAT: 4, "/v1/models": 1, "/v1/nope": 1}
    assert stats["statuses"] == {200: 5, 404: 1}
    assert stats["repeated_requests"] == 2
    assert stats["unique_requests"] == 2
    assert [r["body"] for r in stats["requests"]] == [
        a,
        b,
        {"model": "m", "messages": user("different")},
        a,
    ]
    assert stats["prompt_tokens"] == 4

    server.reset()
    stats = server.stats
    assert stats["total_requests"] == 0
    assert stats["repeated_requests"] == 0
    assert stats["requests"] == []
    assert stats["arrivals"] == []
    raw.close()


def test_control_endpoints_over_http(openai_server: OpenAITestServer) -> None:
    client = sdk(openai_server)
    client.chat.completions.create(model="m", messages=user("x"))
    stats = remote_stats(openai_server.base_url)
    assert stats["statuses"] == {200: 1}
    assert len(stats["arrivals"]) == 1
    assert "arrivals" not in remote_stats(openai_server.base_url, arrivals=False)
    config = remote_update(openai_server.base_url, status_sequence=[503], model="other")
    assert config["status_sequence"] == [503]
    assert openai_server.config.model == "other"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=user("x"))
    remote_reset(openai_server.base_url)
    assert openai_server.stats["total_requests"] == 0
    raw = Raw(openai_server)
    status, _, body = raw.request("POST", "/_config", {"no_such_knob": 1})
    assert status == 400
    assert "no_such_knob" in json.loads(body)["error"]["message"]
    raw.close()


def test_invalid_json_and_methods(raw: Raw) -> None:
    raw.conn.request("POST", CHAT, body=b"{not json", headers={"content-type": "application/json"})
    resp = raw.conn.getresponse()
    assert resp.status == 400
    assert json.loads(resp.read())["error"]["type"] == "invalid_request_error"
    assert raw.request("GET", CHAT)[0] == 405


def test_pipelined_requests_answer_in_order(openai_server_factory: Factory) -> None:
    server = openai_server_factory(latency_s=0.05)
    payloads = []
    for word in ("first", "second"):
        body = json.dumps({"model": "m", "messages": user(word)}).encode()
        head = f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n"
        payloads.append(head.encode() + body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"".join(payloads))
        data = b""
        while data.count(b"reply to: ") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert data.index(b"reply to: first") < data.index(b"reply to: second")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="sum"):
        OpenAITestServer(failure_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError, match="failure_rate"):
        ServerConfig(failure_rate=2).validate()


# --------------------------------------------------------------------------- process mode


def test_cli_flags_map_to_config() -> None:
    config = _parse_args(
        [
            "--port", "0", "--latency-ms", "20", "--jitter-ms", "5", "--failure-rate", "0.1",
            "--rate-429", "0.2", "--retry-after", "1.5", "--rpm-limit", "100", "--tpm-limit", "1000",
            "--seed", "3", "--no-honour-n", "--status-sequence", "429,200", "--api-key", "k",
        ]
    )  # fmt: skip
    assert config.latency_s == pytest.approx(0.02)
    assert config.jitter_s == pytest.approx(0.005)
    assert (config.failure_rate, config.rate_429, config.retry_after_s) == (0.1, 0.2, 1.5)
    assert (config.rpm_limit, config.tpm_limit, config.seed) == (100, 1000, 3)
    assert config.honour_n is False
    assert config.status_sequence == [429, 200]
    assert config.api_key == "k"


def test_subprocess_mode() -> None:
    proc, base_url = run_server_process(ServerConfig(status_sequence=[500]), honour_n=False)
    try:
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=1)
        resp = client.chat.completions.create(model="m", messages=user("proc"), n=2)
        assert [c.message.content for c in resp.choices] == ["reply to: proc"]
        stats = remote_stats(base_url)
        assert stats["statuses"] == {500: 1, 200: 1}
        assert stats["repeated_requests"] == 1  # the SDK's retry sent the same body again
    finally:
        stop_server_process(proc)
    assert proc.returncode is not None
