"""OpenAI-protocol vendors, each through its own SDK, against the OpenAI test server with the
vendor's URL layout: Groq, Mistral, Azure OpenAI, Hugging Face inference, Together."""

from __future__ import annotations

import json

import pytest

from alambic.errors import AlambicUserError
from alambic.llms.azure import AzureOpenAILLM
from alambic.llms.groq import GroqLLM
from alambic.llms.huggingface import InferenceEndpointsLLM
from alambic.llms.mistral import MistralLLM
from alambic.llms.together import TogetherLLM
from alambic.testing.openai_server import ServerConfig
from alambic.testing.openai_vendor_server import VendorOpenAITestServer
from alambic.testing.provider_checks import HELLO, check_missing_key, check_missing_sdk, fast

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture
def server():
    with VendorOpenAITestServer(ServerConfig(record_requests=True)) as srv:
        yield srv


@pytest.fixture
def hub_online(monkeypatch):
    """huggingface_hub blocks even 127.0.0.1 while offline mode is on."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def bodies(server):
    return [r["body"] for r in server.stats["requests"]]


# -- Groq ---------------------------------------------------------------------------------


def test_groq_reply_and_statistics(server):
    llm = GroqLLM(model="llama-test", base_url=server.url)
    llm.load()
    [out] = llm.generate([HELLO], max_new_tokens=20)
    assert out["generations"] == ["reply to: hello there"]
    assert out["statistics"] == {"input_tokens": [2], "output_tokens": [4]}
    assert server.stats["paths"] == {"/v1/chat/completions": 1}
    assert bodies(server)[0]["max_tokens"] == 20


def test_groq_several_generations_are_several_requests(server):
    [out] = GroqLLM(model="llama-test", base_url=server.url).generate([HELLO], num_generations=2)
    assert out["generations"] == ["reply to: hello there"] * 2
    assert all("n" not in b for b in bodies(server))


def test_groq_rate_limit_retried_and_bad_key_not():
    with VendorOpenAITestServer(status_sequence=[429], retry_after_s=0.05) as server:
        llm = fast(GroqLLM(model="m", base_url=server.url))
        [out] = llm.generate([HELLO])
        assert out["generations"] == ["reply to: hello there"]
        assert server.stats["statuses"] == {429: 1, 200: 1}
    with VendorOpenAITestServer(api_key="right") as server:
        [out] = fast(GroqLLM(model="m", base_url=server.url, api_key="bad")).generate([HELLO])
        assert out["errors"][0]["kind"] == "authentication"
        assert server.stats["total_requests"] == 1


def test_groq_missing_key_and_sdk(monkeypatch):
    check_missing_key(monkeypatch, GroqLLM(model="m"), "GROQ_API_KEY")
    check_missing_sdk(monkeypatch, GroqLLM(model="m"), "groq", "groq")


# -- Mistral ------------------------------------------------------------------------------


def test_mistral_reply_n_and_renamed_settings(server):
    llm = MistralLLM(model="mistral-test", base_url=server.url)
    llm.load()
    [out] = llm.generate([HELLO], num_generations=2, seed=3, max_new_tokens=9)
    assert out["generations"] == ["reply to: hello there", "reply to: hello there #1"]
    assert out["statistics"]["input_tokens"] == [2, 2]
    body = bodies(server)[0]
    assert (body["n"], body["random_seed"], body["max_tokens"]) == (2, 3, 9)


def test_mistral_structured_output(server):
    [out] = MistralLLM(model="m", base_url=server.url).generate([(HELLO, {"schema": SCHEMA})])
    assert json.loads(out["generations"][0]) == {"city": "x"}
    assert bodies(server)[0]["response_format"]["json_schema"]["schema"] == SCHEMA


def test_mistral_errors():
    with VendorOpenAITestServer(status_sequence=[429, 500]) as server:
        [out] = fast(MistralLLM(model="m", base_url=server.url)).generate([HELLO])
        assert out["generations"] == ["reply to: hello there"]
        assert server.stats["total_requests"] == 3
    with VendorOpenAITestServer(api_key="right") as server:
        [out] = fast(MistralLLM(model="m", base_url=server.url, api_key="bad")).generate([HELLO])
        assert out["errors"][0]["kind"] == "authentication"
        assert server.stats["total_requests"] == 1


def test_mistral_missing_key_and_sdk(monkeypatch):
    check_missing_key(monkeypatch, MistralLLM(model="m"), "MISTRAL_API_KEY")
    check_missing_sdk(monkeypatch, MistralLLM(model="m"), "mistralai.client", "mistralai")


# -- Azure OpenAI -------------------------------------------------------------------------


def test_azure_uses_deployment_paths_and_api_key_header():
    with VendorOpenAITestServer(ServerConfig(api_key="azure-key")) as server:
        llm = AzureOpenAILLM(
            model="my-deployment",
            base_url=server.url,
            api_version="2024-10-21",
            api_key="azure-key",
        )
        llm.load()
        [out] = llm.generate([HELLO], num_generations=2)
        assert out["generations"] == ["reply to: hello there", "reply to: hello there #1"]
        assert server.deployments == ["my-deployment"]


def test_azure_needs_endpoint_version_and_key(monkeypatch):
    with pytest.raises(AlambicUserError, match="AZURE_OPENAI_ENDPOINT"):
        AzureOpenAILLM(model="d", api_version="v", api_key="k").load()
    with pytest.raises(AlambicUserError, match="OPENAI_API_VERSION"):
        AzureOpenAILLM(model="d", base_url="https://x.openai.azure.com", api_key="k").load()
    monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
    check_missing_key(
        monkeypatch,
        AzureOpenAILLM(model="d", base_url="https://x.openai.azure.com"),
        "AZURE_OPENAI_API_KEY",
    )


# -- Hugging Face inference ---------------------------------------------------------------


def test_hf_base_url_reply_and_statistics(server, hub_online):
    llm = InferenceEndpointsLLM(base_url=server.url)
    llm.load()
    [out] = llm.generate([HELLO], num_generations=2, max_new_tokens=10, stop="zz")
    assert out["generations"] == ["reply to: hello there"] * 2
    assert out["statistics"] == {"input_tokens": [2, 2], "output_tokens": [4, 4]}
    assert llm.model_name == server.url
    body = bodies(server)[0]
    assert (body["max_tokens"], body["stop"]) == (10, ["zz"])


def test_hf_structured_output(hub_online):
    # huggingface_hub sends TGI's grammar form, {"type": "json_object", "value": <schema>},
    # which the OpenAI test server does not enforce: it is told what to answer instead.
    config = ServerConfig(record_requests=True, reply=lambda request, i: '{"city": "Paris"}')
    with VendorOpenAITestServer(config) as server:
        llm = InferenceEndpointsLLM(base_url=server.url)
        [out] = llm.generate([(HELLO, {"schema": SCHEMA})])
        sent = bodies(server)[0]["response_format"]
    assert json.loads(out["generations"][0]) == {"city": "Paris"}
    assert sent == {"type": "json_object", "value": SCHEMA}


def test_hf_rate_limit_retried_and_bad_key_not(hub_online):
    with VendorOpenAITestServer(status_sequence=[429]) as server:
        [out] = fast(InferenceEndpointsLLM(base_url=server.url)).generate([HELLO])
        assert out["generations"] == ["reply to: hello there"]
        assert server.stats["total_requests"] == 2
    with VendorOpenAITestServer(api_key="right") as server:
        llm = fast(InferenceEndpointsLLM(base_url=server.url, api_key="bad"))
        [out] = llm.generate([HELLO])
        assert out["errors"][0]["kind"] == "authentication"
        assert server.stats["total_requests"] == 1


def test_hf_offline_mode_is_reported_at_load(server):
    with pytest.raises(AlambicUserError, match="HF_HUB_OFFLINE"):
        InferenceEndpointsLLM(base_url=server.url).load()


def test_hf_target_must_be_unambiguous(hub_online):
    with pytest.raises(AlambicUserError, match="not both endpoint_name and base_url"):
        InferenceEndpointsLLM(endpoint_name="e", base_url="http://127.0.0.1:1").load()
    with pytest.raises(AlambicUserError, match="needs model"):
        InferenceEndpointsLLM().load()


def test_hf_model_is_sent_to_a_base_url(server, hub_online):
    llm = InferenceEndpointsLLM(model="served-name", base_url=server.url)
    [out] = llm.generate([HELLO])
    assert out["generations"] == ["reply to: hello there"]
    assert bodies(server)[0]["model"] == "served-name"
    assert llm.model_name == "served-name"


def test_hf_serverless_needs_a_token(hub_online, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    check_missing_key(monkeypatch, InferenceEndpointsLLM(model="org/model"), "HF_TOKEN")


# -- Together -----------------------------------------------------------------------------


def test_together_is_a_base_url_and_a_key_variable(monkeypatch):
    llm = TogetherLLM(model="meta-llama/x")
    assert llm.resolved_base_url() == "https://api.together.xyz/v1"
    check_missing_key(monkeypatch, llm, "TOGETHER_API_KEY")
