"""Turn the tiny Hugging Face test model into a GGUF file, so llama.cpp code runs offline.

Why this exists: ``LlamaCppLLM`` and llama-cpp-python's OpenAI-compatible server need a
``.gguf`` file, and hub downloads are not available to tests.  llama.cpp's own converter is
a large script outside any package; this module writes the one architecture our tests use
(the Llama built by :mod:`alambic.testing.tiny_model`) with the ``gguf`` package's writer,
in well under a second.

What is carried over, and why each part matters to llama.cpp:

* the weights, in float32, under llama.cpp's tensor names.  Hugging Face's Llama rotates
  the two *halves* of each attention head (``rotate_half``), llama.cpp's ``llama``
  architecture rotates *adjacent pairs*, so the rows of the query and key projections are
  reordered per head (pair ``(i, i + d/2)`` becomes ``(2i, 2i + 1)``); without this the
  model still runs but computes something else than the Hugging Face model does;
* the byte-level BPE tokenizer as a ``gpt2`` vocabulary: tokens in id order, merges, token
  types (special tokens are ``CONTROL``, so ``<|im_end|>`` ends generation), the ``gpt-2``
  pre-tokenizer (the same split regex as ``tokenizers``' ``ByteLevel(use_regex=True)``),
  and no automatic BOS (the Hugging Face tokenizer adds none either);
* the chat template, so ``Llama.create_chat_completion`` and llama-cpp-python's server
  format conversations exactly as ``transformers`` does.

Only what :func:`~alambic.testing.tiny_model.build_tiny_chat_model` produces is supported
(``LlamaForCausalLM``, float weights, a byte-level BPE ``tokenizer.json``); anything else is
refused with the reason.  ``gguf`` and ``safetensors`` are imported inside the functions.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["GGUF_FILE_NAME", "build_tiny_gguf", "hf_to_gguf_rope_order"]

#: Default file name, written next to the Hugging Face files of the model folder.
GGUF_FILE_NAME = "model.gguf"

# Hugging Face parameter name (with ``{i}`` for the layer) -> llama.cpp tensor name.
_LAYER_TENSORS = {
    "model.layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blk.{i}.ffn_norm.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "model.layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "model.layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
}
_GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def _module(name: str) -> Any:
    """Import an optional package lazily, typed as ``Any`` (see ``tiny_model._transformers``)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"build_tiny_gguf needs the {name!r} package (pip install {name}); "
            'it comes with pip install "alambic[dev]".'
        ) from exc


def hf_to_gguf_rope_order(weight: Any, n_heads: int) -> Any:
    """Reorder the output rows of a query/key projection from Hugging Face's rotary layout
    (each head: first half, then second half) to llama.cpp's (each head: interleaved pairs).

    ``weight`` is a ``(n_heads * head_dim, in_features)`` array; row ``k * head_dim/2 + j``
    of a head becomes row ``2 * j + k``.
    """
    rows, cols = weight.shape
    half = rows // n_heads // 2
    return weight.reshape(n_heads, 2, half, cols).swapaxes(1, 2).reshape(rows, cols)


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _chat_template(model_dir: Path) -> str | None:
    """The chat template, from ``chat_template.jinja`` (transformers >= 4.50 writes it there)
    or else from ``tokenizer_config.json``."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config_file = model_dir / "tokenizer_config.json"
    if config_file.is_file():
        template = _read_json(config_file).get("chat_template")
        if isinstance(template, str):
            return template
    return None


def _vocabulary(
    tokenizer: dict[str, Any], vocab_size: int
) -> tuple[list[str], list[int], list[str]]:
    """Tokens in id order, their GGUF token types, and the merges as ``"left right"``."""
    gguf = _module("gguf")
    model = tokenizer.get("model") or {}
    pre = tokenizer.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel":
        raise ValueError(
            "build_tiny_gguf converts byte-level BPE tokenizers only (model.type 'BPE', "
            f"pre_tokenizer.type 'ByteLevel'); got model.type {model.get('type')!r}, "
            f"pre_tokenizer.type {pre.get('type')!r}."
        )
    by_id: dict[int, tuple[str, int]] = {
        int(i): (token, int(gguf.TokenType.NORMAL)) for token, i in model["vocab"].items()
    }
    for added in tokenizer.get("added_tokens") or []:
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[int(added["id"])] = (added["content"], int(kind))
    size = max(vocab_size, max(by_id) + 1)
    tokens: list[str] = []
    types: list[int] = []
    for i in range(size):  # ids the tokenizer never uses are padding rows of the embedding
        token, kind = by_id.get(i, (f"[PAD{i}]", int(gguf.TokenType.UNUSED)))
        tokens.append(token)
        types.append(kind)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    return tokens, types, merges


def _weights(model_dir: Path) -> dict[str, Any]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(
            f"no *.safetensors weights in {str(model_dir)!r}; build the model with "
            "alambic.testing.tiny_model.build_tiny_chat_model(path) first."
        )
    load_file = _module("safetensors.numpy").load_file
    weights: dict[str, Any] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights


def build_tiny_gguf(model_dir: str | Path, gguf_path: str | Path | None = None) -> Path:
    """Write the tiny Hugging Face Llama chat model in ``model_dir`` as a GGUF file.

    ``gguf_path`` defaults to ``model_dir/model.gguf``.  Idempotent: a GGUF newer than the
    model's weights is returned as is.  The file is written under a temporary name and
    renamed into place, so concurrent test workers never read a half-written file.
    Returns the GGUF path.
    """
    src = Path(model_dir)
    target = Path(gguf_path) if gguf_path is not None else src / GGUF_FILE_NAME
    config_file = src / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{str(config_file)!r} does not exist: model_dir must be a Hugging Face model "
            "folder such as alambic.testing.tiny_model.build_tiny_chat_model(path) makes."
        )
    weight_files = list(src.glob("*.safetensors"))
    if target.is_file() and weight_files:
        newest = max(f.stat().st_mtime for f in weight_files)
        if target.stat().st_mtime >= newest:
            return target

    config = _read_json(config_file)
    architectures = config.get("architectures") or []
    if architectures != ["LlamaForCausalLM"]:
        raise ValueError(
            "build_tiny_gguf converts LlamaForCausalLM models only; "
            f"{str(config_file)!r} has architectures={architectures!r}."
        )
    gguf = _module("gguf")
    np = _module("numpy")

    n_heads = int(config["num_attention_heads"])
    n_kv_heads = int(config.get("num_key_value_heads") or n_heads)
    hidden = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or hidden // n_heads)
    n_layers = int(config["num_hidden_layers"])
    rope = config.get("rope_parameters") or {}
    rope_theta = float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)
    if rope.get("rope_type", "default") != "default" or config.get("rope_scaling"):
        raise ValueError(
            f"build_tiny_gguf writes plain rotary embeddings only; {str(config_file)!r} "
            f"asks for rope_parameters={rope!r}, rope_scaling={config.get('rope_scaling')!r}."
        )

    tokenizer = _read_json(src / "tokenizer.json")
    tokens, token_types, merges = _vocabulary(tokenizer, int(config["vocab_size"]))
    weights = _weights(src)

    names = dict(_GLOBAL_TENSORS)
    for i in range(n_layers):
        names.update({hf.format(i=i): gg.format(i=i) for hf, gg in _LAYER_TENSORS.items()})
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(
            f"build_tiny_gguf does not know where the weights {unknown} of {str(src)!r} go; "
            f"it maps {sorted(_GLOBAL_TENSORS)} and the per-layer {sorted(_LAYER_TENSORS)}."
        )
    if "lm_head.weight" not in weights:  # tied embeddings: the output layer is the embedding
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    missing = sorted(set(names) - set(weights))
    if missing:
        raise ValueError(f"the weights of {str(src)!r} lack {missing}.")

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, "llama")
        writer.add_name(src.name)
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
        writer.add_embedding_length(hidden)
        writer.add_block_count(n_layers)
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_head_count(n_heads)
        writer.add_head_count_kv(n_kv_heads)
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(rope_theta)
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps") or 1e-6))
        writer.add_vocab_size(len(tokens))

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        writer.add_token_merges(merges)
        for key, add in (
            ("bos_token_id", writer.add_bos_token_id),
            ("eos_token_id", writer.add_eos_token_id),
            ("pad_token_id", writer.add_pad_token_id),
        ):
            value = config.get(key)
            if isinstance(value, list):
                value = value[0] if value else None
            if value is not None:
                add(int(value))
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)
        template = _chat_template(src)
        if template is not None:
            writer.add_chat_template(template)

        for hf_name, gguf_name in names.items():
            array = np.ascontiguousarray(weights[hf_name], dtype=np.float32)
            if hf_name.endswith("q_proj.weight"):
                array = hf_to_gguf_rope_order(array, n_heads)
            elif hf_name.endswith("k_proj.weight"):
                array = hf_to_gguf_rope_order(array, n_kv_heads)
            writer.add_tensor(gguf_name, np.ascontiguousarray(array))

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would survive the rename
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
