"""OpenAILLM.complete: raw prompts through the legacy /v1/completions endpoint."""

from __future__ import annotations

from alambic.llms.openai import OpenAILLM
from alambic.testing.openai_server import OpenAITestServer, ServerConfig
from alambic.testing.provider_checks import fast


def test_complete_sends_the_raw_prompt_and_reads_usage():
    with OpenAITestServer(ServerConfig(record_requests=True)) as server:
        llm = OpenAILLM(model="m", base_url=server.base_url)
        outs = llm.complete(["<|im_start|>user\n", "Once upon"], max_new_tokens=7)
        bodies = [r["body"] for r in server.stats["requests"]]
        paths = server.stats["paths"]
    assert OpenAILLM.supports_raw_completion
    assert [o["generations"] for o in outs] == [
        ["reply to: <|im_start|>user\n"],
        ["reply to: Once upon"],
    ]
    assert outs[1]["statistics"] == {"input_tokens": [2], "output_tokens": [4]}
    assert paths == {"/v1/completions": 2}
    assert sorted(b["prompt"] for b in bodies) == ["<|im_start|>user\n", "Once upon"]
    assert all(b["max_tokens"] == 7 and "messages" not in b for b in bodies)


def test_complete_uses_n_and_fans_out_when_ignored():
    with OpenAITestServer() as server:
        [out] = OpenAILLM(model="m", base_url=server.base_url).complete(["x"], num_generations=3)
        assert len(out["generations"]) == 3
        assert server.stats["total_requests"] == 1
    with OpenAITestServer(honour_n=False) as server:
        [out] = OpenAILLM(model="m", base_url=server.base_url).complete(["x"], num_generations=3)
        assert out["generations"] == ["reply to: x"] * 3
        assert out["statistics"]["output_tokens"] == [3, 3, 3]
        assert server.stats["total_requests"] == 3


def test_complete_retries_rate_limits_and_keeps_failures():
    with OpenAITestServer(status_sequence=[429], retry_after_s=0.05) as server:
        [out] = fast(OpenAILLM(model="m", base_url=server.base_url)).complete(["x"])
        assert out["generations"] == ["reply to: x"]
        assert server.stats["statuses"] == {429: 1, 200: 1}
    with OpenAITestServer(api_key="right") as server:
        llm = fast(OpenAILLM(model="m", base_url=server.base_url, api_key="wrong"))
        [out] = llm.complete(["x"], num_generations=2)
        assert out["generations"] == [None, None]
        assert out["errors"][0]["kind"] == "authentication"
        assert server.stats["total_requests"] == 1
