"""LlamaCppLLM: settings mapping runs everywhere; generation needs llama-cpp-python (it
compiles for ~10 minutes on install, so it is an optional extra) and a GGUF file, given by
ALAMBIC_TEST_GGUF (the tiny test model converted with llama.cpp's convert_hf_to_gguf.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from alambic.errors import MissingDependencyError
from alambic.llms.llamacpp import LlamaCppLLM, llamacpp_kwargs


def _skip_reason() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return 'llama-cpp-python is not installed (pip install "alambic[llama-cpp]")'
    path = os.environ.get("ALAMBIC_TEST_GGUF")
    if not path or not os.path.isfile(path):
        return "set ALAMBIC_TEST_GGUF to a small .gguf model file to run llama.cpp generation"
    return None


SKIP_REASON = _skip_reason()


def test_settings_are_renamed_and_checked():
    assert llamacpp_kwargs({"max_new_tokens": 3, "repetition_penalty": 1.1, "stop": "x"}) == {
        "max_tokens": 3,
        "repeat_penalty": 1.1,
        "stop": ["x"],
    }
    assert llamacpp_kwargs({"do_sample": False}) == {"temperature": 0.0, "max_tokens": 128}
    with pytest.raises(ValueError, match=r"unknown generation settings \['num_beams'\]"):
        llamacpp_kwargs({"num_beams": 2})


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "alambic\[llama-cpp\]"'):
        LlamaCppLLM(model_path="m.gguf").load()


def test_model_name_is_the_file():
    assert LlamaCppLLM(model_path="/models/x.gguf").model_name == "/models/x.gguf"


@pytest.mark.llamacpp
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_generate_complete_and_json_schema():
    llm = LlamaCppLLM(model_path=os.environ["ALAMBIC_TEST_GGUF"], n_ctx=512)
    llm.load()
    outs = llm.generate(
        [[{"role": "user", "content": "hi"}]] * 2, num_generations=2, max_new_tokens=4, seed=1
    )
    assert [len(o["generations"]) for o in outs] == [2, 2]
    assert all(isinstance(t, str) for o in outs for t in o["generations"])
    assert all(n is not None and n <= 4 for o in outs for n in o["statistics"]["output_tokens"])
    [raw] = llm.complete(["Once upon a time"], max_new_tokens=3)
    assert raw["statistics"]["output_tokens"][0] <= 3
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    [guided] = llm.generate(
        [([{"role": "user", "content": "n?"}], {"schema": schema})], max_new_tokens=24
    )
    assert isinstance(json.loads(guided["generations"][0])["n"], int)
