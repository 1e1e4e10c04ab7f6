"""AnthropicLLM against a real Anthropic-protocol server: the LiteLLM proxy, forwarding to
the OpenAI test server (model declared as ``hosted_vllm/test-model``).

litellm 1.x pins openai<3, so the proxy (``litellm[proxy]``) is kept out of the main
environment, where these tests skip with a reason. They run in ``.venv-litellm``, made by
``bash scripts/make_litellm_venv.sh`` (``.ci/run`` does it): ``scripts/check.sh`` runs this
file with that environment's python and ``ALAMBIC_LITELLM_CLI`` set to its ``litellm``
executable, and fails if anything skips there. The CLI is found, in order: in
``ALAMBIC_LITELLM_CLI``, beside the running interpreter, on ``PATH``. By hand::

    .venv-litellm/bin/python -m pytest -q tests/llms/test_anthropic_litellm_proxy.py

Slow: the proxy takes 10-45 s to start (once per module).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from alambic.llms.anthropic import AnthropicLLM
from alambic.testing.openai_server import OpenAITestServer, ServerConfig
from alambic.testing.processes import free_port, serve_process


def _proxy_cli() -> str | None:
    """``ALAMBIC_LITELLM_CLI``, else the ``litellm`` beside this interpreter, else on PATH."""
    if os.environ.get("ALAMBIC_LITELLM_CLI"):
        return os.environ["ALAMBIC_LITELLM_CLI"]
    beside = Path(sys.executable).parent / "litellm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("litellm")


CLI = _proxy_cli()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CLI is None,
        reason="the LiteLLM proxy CLI is not installed; it pins openai<3, so it lives in "
        ".venv-litellm (bash scripts/make_litellm_venv.sh), where scripts/check.sh runs this "
        "test (or set ALAMBIC_LITELLM_CLI to any `litellm` executable)",
    ),
]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, OpenAITestServer]]:
    backend = OpenAITestServer(ServerConfig(record_requests=True))
    backend.start()
    port = free_port()
    folder: Path = tmp_path_factory.mktemp("litellm-proxy")
    config = folder / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: claude-test\n"
        "    litellm_params:\n"
        "      model: hosted_vllm/test-model\n"
        f"      api_base: {backend.base_url}\n"
        "      api_key: none\n"
    )
    env = {**os.environ, "LITELLM_MASTER_KEY": "sk-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    cmd = [str(CLI), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    try:
        with serve_process(
            cmd,
            f"{url}/health/liveliness",
            name="the LiteLLM proxy",
            log_path=folder / "proxy.log",
            timeout=150,
            env=env,
        ):
            yield url, backend
    finally:
        backend.stop()


def test_messages_through_the_proxy(proxy: tuple[str, OpenAITestServer]) -> None:
    url, backend = proxy
    llm = AnthropicLLM(model="claude-test", base_url=url, api_key="sk-test")
    llm.load()
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]
    [out] = llm.generate([messages], num_generations=2, max_new_tokens=20)
    assert out["generations"] == ["reply to: hello there"] * 2
    assert out["statistics"] == {"input_tokens": [4, 4], "output_tokens": [4, 4]}
    forwarded = backend.stats["requests"][-1]["body"]
    assert forwarded["messages"][0] == {"role": "system", "content": "be brief"}


def test_tool_use_schema_reaches_the_backend_as_a_forced_function(
    proxy: tuple[str, OpenAITestServer],
) -> None:
    url, backend = proxy
    llm = AnthropicLLM(
        model="claude-test", base_url=url, api_key="sk-test", structured_output_retries=0
    )
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    [out] = llm.generate([([{"role": "user", "content": "a city"}], {"schema": schema})])
    forwarded = backend.stats["requests"][-1]["body"]
    assert forwarded["tools"][0]["function"]["parameters"] == schema
    assert forwarded["tool_choice"] == {"type": "function", "function": {"name": "output"}}
    # The test server answers in text, not with a tool call: the proxy hands that text back
    # and alambic reports a structured-output failure quoting it, instead of passing it on.
    assert out["generations"] == [None]
    [error] = out["errors"]
    assert error["kind"] == "structured_output"
    assert "reply to: a city" in error["message"]
