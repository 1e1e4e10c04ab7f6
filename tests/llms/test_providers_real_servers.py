"""Provider SDKs against a real OpenAI-compatible server on 127.0.0.1: ``transformers
serve`` on the tiny test model (slow: the server takes ~8 s to start). The server is pinned
to the model folder, so that path is the model name every request sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from alambic.llms.huggingface import InferenceEndpointsLLM
from alambic.llms.mistral import MistralLLM
from alambic.llms.openai import OpenAILLM

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def hub_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub refuses even 127.0.0.1 while offline mode is on."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def _root(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def test_inference_endpoints_llm_on_transformers_serve(
    transformers_serve: str, tiny_model_path: Path, hub_online: None
) -> None:
    llm = InferenceEndpointsLLM(model=str(tiny_model_path), base_url=_root(transformers_serve))
    llm.load()
    [out] = llm.generate([HELLO], max_new_tokens=4)
    assert "errors" not in out, out
    assert isinstance(out["generations"][0], str)
    assert 0 < out["statistics"]["output_tokens"][0] <= 4
    assert out["statistics"]["input_tokens"][0] > 0


def test_mistral_llm_on_transformers_serve(transformers_serve: str, tiny_model_path: Path) -> None:
    llm = MistralLLM(model=str(tiny_model_path), base_url=_root(transformers_serve))
    llm.load()
    [out] = llm.generate([HELLO], max_new_tokens=4)
    assert "errors" not in out, out
    assert isinstance(out["generations"][0], str)
    assert out["statistics"]["input_tokens"][0] > 0


def test_openai_complete_on_transformers_serve(
    transformers_serve: str, tiny_model_path: Path
) -> None:
    llm = OpenAILLM(model=str(tiny_model_path), base_url=transformers_serve)
    [out] = llm.complete(["<|im_start|>user\n"], num_generations=2, max_new_tokens=4)
    assert "errors" not in out, out
    assert [isinstance(t, str) for t in out["generations"]] == [True, True]
    assert out["statistics"]["input_tokens"][0] > 0
