"""vLLM: settings mapping, prompt rendering and output reading run everywhere; the engine
itself needs a GPU and the vllm package, so that test skips with the reason elsewhere."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import SimpleNamespace

import pytest

from alambic.errors import MissingDependencyError
from alambic.llms.vllm import request_output_to_generate_output, sampling_kwargs, vLLM


def _gpu_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return 'vllm is not installed (pip install "alambic[vllm]")'
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is available here"
    return None


GPU_REASON = _gpu_reason()


def test_sampling_kwargs_rename_and_default():
    kwargs = sampling_kwargs({"max_new_tokens": 5, "min_new_tokens": 2, "stop": "x"}, 3)
    assert kwargs == {"n": 3, "max_tokens": 5, "min_tokens": 2, "stop": ["x"]}
    assert sampling_kwargs({}, 1) == {"n": 1, "max_tokens": 128}


def test_sampling_kwargs_greedy_and_unknown():
    assert sampling_kwargs({"do_sample": False, "temperature": 0.8}, 1)["temperature"] == 0.0
    with pytest.raises(ValueError, match=r"unknown generation settings \['beam_width'\]"):
        sampling_kwargs({"beam_width": 2}, 1)


def test_prompt_uses_the_chat_template(tiny_model_path):
    from transformers import AutoTokenizer

    llm = vLLM(model=str(tiny_model_path))
    llm._tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    prompt = llm.prepare_prompt([{"role": "user", "content": "hi"}])
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_request_output_is_read_in_index_order():
    output = SimpleNamespace(
        prompt_token_ids=[1, 2, 3],
        outputs=[
            SimpleNamespace(index=1, text="b", token_ids=[7]),
            SimpleNamespace(index=0, text="a", token_ids=[5, 6]),
        ],
    )
    assert request_output_to_generate_output(output) == {
        "generations": ["a", "b"],
        "statistics": {"input_tokens": [3, 3], "output_tokens": [2, 1]},
    }


def test_missing_vllm_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "alambic\[vllm\]"'):
        vLLM(model="m").load()


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=GPU_REASON or "")
def test_engine_generates_completes_and_guides(tiny_model_path):
    llm = vLLM(model=str(tiny_model_path), gpu_memory_utilization=0.2, max_model_len=256)
    llm.load()
    outs = llm.generate(
        [[{"role": "user", "content": "hi"}]] * 3,
        num_generations=2,
        max_new_tokens=4,
        min_new_tokens=4,
    )
    assert [len(o["generations"]) for o in outs] == [2, 2, 2]
    assert outs[0]["statistics"]["output_tokens"] == [4, 4]
    [raw] = llm.complete(["<|im_start|>user\n"], max_new_tokens=3, min_new_tokens=3)
    assert raw["statistics"]["output_tokens"] == [3]
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    [guided] = llm.generate(
        [([{"role": "user", "content": "n?"}], {"schema": schema})], max_new_tokens=32
    )
    assert isinstance(json.loads(guided["generations"][0])["n"], int)
