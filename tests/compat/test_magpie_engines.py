"""``MagpieChatTemplateMixin`` on the local engines distilabel users run Magpie with (issue 15):
``vLLM`` and ``LlamaCppLLM`` take ``magpie_pre_query_template=...`` like ``TransformersLLM``.

vLLM needs a GPU and is not installed here, so its prompt rendering is checked with the tiny
model's real tokenizer (what the engine hands ``prepare_prompt``). LlamaCppLLM runs the tiny
GGUF in this process; its tests skip where llama-cpp-python is not installed (CI has it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from alambic.errors import AlambicUserError
from alambic.llms.llamacpp import LlamaCppLLM
from alambic.llms.magpie import PRE_QUERY_TEMPLATES, MagpieChatTemplateMixin
from alambic.llms.vllm import vLLM
from alambic.pipeline import Pipeline
from alambic.steps.tasks import Magpie, MagpieGenerator

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason='llama-cpp-python is not installed (pip install "alambic[llama-cpp]"; CI installs it)',
)
SYSTEM = [{"role": "system", "content": "Be brief."}]
CHATML_SYSTEM = "<|im_start|>system\nBe brief.<|im_end|>\n"


def _vllm_with_tokenizer(tiny_model_path: Path, **kwargs: object) -> vLLM:
    from transformers import AutoTokenizer

    llm = vLLM(model=str(tiny_model_path), **kwargs)  # type: ignore[arg-type]
    llm._tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    return llm


def test_vllm_carries_the_mixin_and_renders_the_pre_query(tiny_model_path: Path) -> None:
    llm = _vllm_with_tokenizer(tiny_model_path, magpie_pre_query_template="qwen2")
    assert isinstance(llm, MagpieChatTemplateMixin)
    assert llm.use_magpie_template
    assert llm.prepare_prompt([]) == "<|im_start|>user\n"
    assert llm.prepare_prompt(SYSTEM) == CHATML_SYSTEM + "<|im_start|>user\n"  # type: ignore[arg-type]
    # a conversation ending with a user turn is answered as usual
    user = [{"role": "user", "content": "hi"}]
    assert llm.prepare_prompt(user).endswith("<|im_start|>assistant\n")  # type: ignore[arg-type]
    plain = _vllm_with_tokenizer(tiny_model_path)
    assert not plain.use_magpie_template
    assert plain.prepare_prompt(SYSTEM).endswith("<|im_start|>assistant\n")  # type: ignore[arg-type]


def test_magpie_takes_the_template_from_a_vllm() -> None:
    task = Magpie(name="m", llm=vLLM(model="m", magpie_pre_query_template="llama3"))
    assert task.template() == PRE_QUERY_TEMPLATES["llama3"]
    assert not task._delegated()  # vLLM completes raw prompts: the task renders them itself


@needs_llama_cpp
def test_llamacpp_generate_writes_the_next_user_turn(tiny_gguf_path: Path) -> None:
    greedy = {"max_new_tokens": 6, "temperature": 0.0, "seed": 0}
    llm = LlamaCppLLM(
        model_path=str(tiny_gguf_path),
        n_ctx=256,
        magpie_pre_query_template="qwen2",
        generation_kwargs=greedy,
    )
    plain = LlamaCppLLM(model_path=str(tiny_gguf_path), n_ctx=256, generation_kwargs=greedy)
    llm.load()
    plain.load()
    try:
        assert isinstance(llm, MagpieChatTemplateMixin)
        assert llm.use_magpie_template
        pre_query = CHATML_SYSTEM + "<|im_start|>user\n"
        magpie = llm.generate([SYSTEM])[0]  # type: ignore[list-item]
        completed = plain.complete([pre_query])[0]
        assert magpie["generations"] == completed["generations"]
        assert magpie["statistics"]["input_tokens"] == completed["statistics"]["input_tokens"]
        user = [{"role": "user", "content": "hi"}]
        assert llm.generate([user])[0]["generations"] == plain.generate([user])[0]["generations"]  # type: ignore[list-item]
        raw = LlamaCppLLM(model_path=str(tiny_gguf_path), magpie_pre_query_template="USER: ")
        with pytest.raises(AlambicUserError, match="can only start a conversation"):
            raw._magpie_prompt(SYSTEM)
        assert raw._magpie_prompt([]) == "USER: "
    finally:
        llm.unload()
        plain.unload()


@needs_llama_cpp
def test_magpie_generator_on_llamacpp_with_the_llms_template(tiny_gguf_path: Path) -> None:
    llm = LlamaCppLLM(
        model_path=str(tiny_gguf_path),
        n_ctx=256,
        magpie_pre_query_template="chatml",
        generation_kwargs={"max_new_tokens": 6, "temperature": 1.0, "seed": 1},
    )
    with Pipeline(name="magpie-llamacpp") as pipeline:
        gen = MagpieGenerator(name="gen", llm=llm, num_rows=2, system_prompt="Be brief.")
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert gen.template() == PRE_QUERY_TEMPLATES["chatml"]
    assert len(rows) == 2
    for row in rows:
        assert set(row) >= {"instruction", "response", "model_name"}
        meta = row["alambic_metadata"]
        error = meta.get("error_gen")
        if error is None:
            assert row["instruction"]
            assert row["response"] is not None
        else:  # a random model may write an empty turn: then the row says so
            assert (row["instruction"], row["response"]) == (None, None)
            assert error["message"]
        assert meta["statistics_gen"]["output_tokens"]
