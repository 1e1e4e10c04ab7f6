"""LiteLLM against the OpenAI test server.

litellm 1.x pins openai<3 and huggingface-hub<2, so it is kept out of the main environment:
there the round trip skips with a reason, and only the argument mapping runs. The round trip
runs in a second environment, ``.venv-litellm``, made by ``bash scripts/make_litellm_venv.sh``
(``.ci/run`` does it): ``scripts/check.sh`` then runs this file with that environment's
python, and fails if anything skips there. By hand::

    .venv-litellm/bin/python -m pytest -q tests/llms/test_litellm.py
"""

from __future__ import annotations

import importlib.util

import pytest

from alambic.llms.litellm import LiteLLM
from alambic.testing.openai_server import OpenAITestServer, ServerConfig
from alambic.testing.provider_checks import HELLO, check_missing_sdk, fast

needs_litellm = pytest.mark.skipif(
    importlib.util.find_spec("litellm") is None,
    reason="litellm is not installed; it pins openai<3, so it lives in .venv-litellm "
    "(bash scripts/make_litellm_venv.sh), where scripts/check.sh runs this test",
)


def test_request_kwargs_map_alambic_settings():
    llm = LiteLLM(model="hosted_vllm/m", base_url="http://127.0.0.1:1/v1", timeout=5)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    kwargs = llm.request_kwargs(
        (HELLO, {"name": "out", "schema": schema}), 2, {"max_new_tokens": 4}
    )
    assert kwargs["model"] == "hosted_vllm/m"
    assert kwargs["api_base"] == "http://127.0.0.1:1/v1"
    assert (kwargs["n"], kwargs["max_tokens"], kwargs["num_retries"]) == (2, 4, 0)
    assert kwargs["response_format"]["json_schema"] == {"name": "out", "schema": schema}


def test_missing_sdk_says_what_to_install(monkeypatch):
    check_missing_sdk(monkeypatch, LiteLLM(model="openai/m"), "litellm", "litellm")


@needs_litellm
def test_round_trip_through_litellm():
    with OpenAITestServer(ServerConfig(status_sequence=[429], retry_after_s=0.05)) as server:
        llm = fast(LiteLLM(model="openai/test-model", base_url=server.base_url, api_key="k"))
        llm.load()
        [out] = llm.generate([HELLO], num_generations=2)
        assert out["generations"] == ["reply to: hello there", "reply to: hello there #1"]
        assert out["statistics"]["input_tokens"] == [2, 2]
        assert server.stats["statuses"] == {429: 1, 200: 1}
