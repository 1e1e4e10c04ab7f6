"""Tests of the tiny on-the-fly models and of ``transformers serve`` running one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from alambic.testing.tiny_model import MARKER_FILE, build_tiny_chat_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_chat_model_folder(tiny_model_path: Path) -> None:
    names = {p.name for p in tiny_model_path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names
    assert MARKER_FILE in names
    assert not list(tiny_model_path.parent.glob(".*build-*"))  # no leftover temp folder
    assert _folder_size(tiny_model_path) < 2_000_000
    config = json.loads((tiny_model_path / "config.json").read_text())
    assert config["hidden_size"] == 64
    assert config["num_hidden_layers"] == 2
    assert config["tie_word_embeddings"] is True
    generation = json.loads((tiny_model_path / "generation_config.json").read_text())
    assert generation["do_sample"] is True
    assert generation["max_new_tokens"] == 16


def test_build_is_idempotent(tiny_model_path: Path) -> None:
    before = (tiny_model_path / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert build_tiny_chat_model(tiny_model_path) == tiny_model_path
    assert time.perf_counter() - start < 1.0  # a rebuild trains nothing but takes seconds
    assert (tiny_model_path / "model.safetensors").stat().st_mtime_ns == before


def test_tokenizer_chat_template(tiny_model_path: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_path)
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<pad>"
    assert tok.padding_side == "left"
    messages = [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "Hello there!"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe nice.<|im_end|>\n"
        "<|im_start|>user\nHello there!<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_prompt = tok.apply_chat_template(messages, tokenize=False)
    assert not no_prompt.endswith("assistant\n")
    # Content parts render their text; special tokens stay single tokens; round trip.
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert "user\nHi<|im_end|>" in tok.apply_chat_template(parts, tokenize=False)
    ids = tok("<|im_start|>user\ndef f(x): return x<|im_end|>", add_special_tokens=False)[
        "input_ids"
    ]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids) == "<|im_start|>user\ndef f(x): return x<|im_end|>"


def test_batch_generation_left_padded(tiny_model_path: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_path)
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        for text in ("hi", "a much longer prompt with quite a few more words in it", "medium one")
    ]
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    mask = batch["attention_mask"]
    assert mask[:, -1].tolist() == [1, 1, 1]  # left padding: every row ends with real tokens
    assert mask[0, 0].item() == 0
    assert batch["input_ids"][0, 0].item() == tok.pad_token_id
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**batch, min_new_tokens=6, max_new_tokens=6)
    prompt_len = batch["input_ids"].shape[1]
    assert out.shape == (3, prompt_len + 6)
    new = out[:, prompt_len:]
    assert (new != tok.pad_token_id).all()
    texts = tok.batch_decode(new, skip_special_tokens=True)
    assert len(texts) == 3
    assert all(isinstance(t, str) for t in texts)


def test_reward_model_scores(tiny_reward_model_path: Path) -> None:
    assert _folder_size(tiny_reward_model_path) < 2_000_000
    tok = transformers.AutoTokenizer.from_pretrained(tiny_reward_model_path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_reward_model_path)
    assert model.config.num_labels == 1
    batch = tok(["short", "a somewhat longer text to score"], return_tensors="pt", padding=True)
    with torch.no_grad():
        scores = model(**batch).logits
    assert scores.shape == (2, 1)
    assert torch.isfinite(scores).all()


@pytest.mark.slow
def test_transformers_serve_chat(transformers_serve: str, tiny_model_path: Path) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=transformers_serve, api_key="test", max_retries=0, timeout=60)
    resp = client.chat.completions.create(
        model=str(tiny_model_path),
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=12,
        temperature=1.0,
        seed=0,
    )
    text = resp.choices[0].message.content
    assert isinstance(text, str)
    assert text.strip()
