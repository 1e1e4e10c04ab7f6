"""The tiny model's GGUF: what the file carries (read back with gguf's reader), and, where
llama-cpp-python is installed, that llama.cpp tokenizes and computes exactly what the
Hugging Face model does (same token ids, same logits), which is what makes the llama.cpp
tests meaningful."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from alambic.testing.tiny_gguf import build_tiny_gguf, hf_to_gguf_rope_order
from alambic.testing.tiny_model import CHATML_TEMPLATE, SPECIAL_TOKENS

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (alambic[dev])")
np = pytest.importorskip("numpy")

NO_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is None
needs_llama_cpp = pytest.mark.skipif(
    NO_LLAMA_CPP, reason='llama-cpp-python is not installed (pip install "alambic[llama-cpp]")'
)


def _field(reader: Any, key: str) -> Any:
    return reader.fields[key].contents()


def test_rope_reordering_interleaves_the_two_halves_of_each_head() -> None:
    # 2 heads of dimension 4, one input column: rows are [h0: 0 1 | 2 3, h1: 4 5 | 6 7].
    weight = np.arange(8, dtype=np.float32).reshape(8, 1)
    reordered = hf_to_gguf_rope_order(weight, n_heads=2)
    assert reordered[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_gguf_carries_the_tokenizer_template_and_weights(
    tiny_gguf_path: Path, tiny_model_path: Path
) -> None:
    reader = gguf.GGUFReader(str(tiny_gguf_path))
    vocab = json.loads((tiny_model_path / "tokenizer.json").read_text())["model"]["vocab"]
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == 2048 == _field(reader, "llama.vocab_size")
    assert all(tokens[i] == token for token, i in vocab.items())
    types = _field(reader, "tokenizer.ggml.token_type")
    assert [tokens[i] for i, t in enumerate(types) if t == gguf.TokenType.CONTROL] == list(
        SPECIAL_TOKENS
    )
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(reader, "tokenizer.ggml.eos_token_id") == 1  # <|im_end|>
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    assert _field(reader, "tokenizer.chat_template") == CHATML_TEMPLATE
    assert _field(reader, "llama.attention.head_count_kv") == 2
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 3 + 2 * 9
    from safetensors.numpy import load_file

    hf = load_file(str(tiny_model_path / "model.safetensors"))
    embedding = np.asarray(tensors["token_embd.weight"].data)
    assert np.array_equal(embedding, hf["model.embed_tokens.weight"])
    key = np.asarray(tensors["blk.1.attn_k.weight"].data)
    hf_key = hf["model.layers.1.self_attn.k_proj.weight"]
    assert not np.array_equal(key, hf_key)  # reordered for llama.cpp's rotary layout...
    assert np.array_equal(key, hf_to_gguf_rope_order(hf_key, n_heads=2))  # ...per KV head


def test_build_is_idempotent_and_refuses_other_models(
    tiny_gguf_path: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    before = tiny_gguf_path.stat().st_mtime_ns
    assert build_tiny_gguf(tiny_model_path, tiny_gguf_path) == tiny_gguf_path
    assert tiny_gguf_path.stat().st_mtime_ns == before
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match=r"LlamaForCausalLM models only.*'BertModel'"):
        build_tiny_gguf(other)
    with pytest.raises(FileNotFoundError, match=r"nowhere.*config\.json.*does not exist"):
        build_tiny_gguf(tmp_path / "nowhere")


@needs_llama_cpp
def test_llama_cpp_tokenizes_like_the_hugging_face_tokenizer(
    tiny_gguf_path: Path, tiny_model_path: Path
) -> None:
    import llama_cpp
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_model_path))
    llama = llama_cpp.Llama(str(tiny_gguf_path), n_ctx=256, verbose=False, vocab_only=True)
    texts = [
        "def main(argv):\n    return 0\n",
        "<|im_start|>user\nHello, world!<|im_end|>\n<|im_start|>assistant\n",
        "  spaces   and\ttabs, numbers 12345 and unicode: café 日本",
    ]
    for text in texts:
        ids = llama.tokenize(text.encode(), add_bos=True, special=True)
        assert ids == hf(text)["input_ids"], text
        assert llama.detokenize(ids, special=True).decode() == text


@needs_llama_cpp
def test_llama_cpp_computes_the_hugging_face_logits(
    tiny_gguf_path: Path, tiny_model_path: Path
) -> None:
    import llama_cpp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(tiny_model_path)
    ids = AutoTokenizer.from_pretrained(path).apply_chat_template(
        [{"role": "user", "content": "Write a haiku about the sea."}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(path)(torch.tensor([ids])).logits[0]
    llama = llama_cpp.Llama(str(tiny_gguf_path), n_ctx=256, logits_all=True, verbose=False)
    llama.eval(ids)
    got = np.asarray(llama.scores[: len(ids)])
    assert got.shape == tuple(expected.shape)
    # Same numbers up to float32 rounding (different kernels): ~2e-4 here.
    assert np.abs(got - expected.numpy()).max() < 2e-3
    assert (got.argmax(-1) == expected.numpy().argmax(-1)).all()
