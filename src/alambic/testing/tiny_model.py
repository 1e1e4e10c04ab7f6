"""Build tiny, random-weight chat and reward models on the fly, offline.

Why this exists: tests of the local-inference code paths (``transformers`` in-process,
``transformers serve``, batching, chat templates, left padding, reward scoring) need a
*real* Hugging Face model folder, but downloading one needs the network and even the
smallest hub models weigh tens of megabytes.  These builders make a ~1 MB Llama model
in about a second from nothing but the Python standard library source (used as
tokenizer training text), so test suites and benchmarks stay hermetic and fast.

The models are untrained: their output is gibberish, but it is real model output going
through real tokenization, generation and decoding.  Notes for callers:

* the end-of-sequence token is ``<|im_end|>`` (ChatML), so a random model may stop at
  any step; pass ``min_new_tokens`` to ``generate`` when you need a fixed length;
* ``generation_config.do_sample`` is ``True`` so that servers honour ``temperature``
  (a greedy default makes them ignore it);
* 32 prompts x 32 new tokens generate in 2-4 s on a laptop-class CPU.

``torch``, ``transformers`` and ``tokenizers`` are imported inside the functions so that
``alambic.testing`` stays importable where those optional extras are not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "CHATML_TEMPLATE",
    "MARKER_FILE",
    "SPECIAL_TOKENS",
    "build_atomically",
    "build_tiny_chat_model",
    "build_tiny_reward_model",
    "build_tiny_tokenizer",
]

#: Written last into a finished model folder; its presence makes the builders no-ops.
MARKER_FILE = ".alambic-tiny-model.json"

#: ChatML control tokens plus the padding token.  Order fixes their ids (0, 1, 2).
SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<pad>")

#: ChatML template.  Content may be a string or a list of OpenAI-style content parts
#: (only ``text`` parts are rendered), because some callers pass the latter verbatim.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- elif message['content'] -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Standard-library modules used as tokenizer training text: a stable, always-present
# mix of code and English prose (docstrings).  Missing ones are skipped.
_TRAINING_MODULES = (
    "os.py",
    "textwrap.py",
    "string.py",
    "random.py",
    "functools.py",
    "dataclasses.py",
    "json/__init__.py",
    "json/decoder.py",
    "argparse.py",
    "collections/__init__.py",
)


def _transformers() -> Any:
    """Import ``transformers`` lazily, typed as ``Any``.

    Its classes are only partly annotated; going through ``Any`` keeps this module
    ``mypy --strict`` clean without ``type: ignore`` comments that other mypy settings
    would flag as unused.
    """
    import transformers

    return transformers


def _training_texts() -> list[str]:
    """Read the stdlib modules used as tokenizer training corpus (deterministic order)."""
    stdlib = Path(os.__file__).parent
    texts: list[str] = []
    for name in _TRAINING_MODULES:
        file = stdlib / name
        if file.is_file():
            texts.append(file.read_text(encoding="utf-8", errors="replace"))
    if not texts:  # pragma: no cover - a Python without its stdlib sources
        texts.append(CHATML_TEMPLATE * 10)
    return texts


def _is_built(path: Path, kind: str) -> bool:
    """True when ``path`` holds a finished build of ``kind`` (marker written last)."""
    marker = path / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()).get("kind") == kind)
    except (OSError, ValueError):
        return False


def build_tiny_tokenizer(*, vocab_size: int = 2048) -> Any:
    """Train a ByteLevel BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast``.

    ByteLevel BPE (the GPT-2/Llama-3 family) can encode any string without unknown
    tokens, which is what generation and chat-template round-trips need.  The result
    has a ChatML chat template, ``eos=<|im_end|>``, ``pad=<pad>`` and left padding
    (decoder-only batch generation requires left padding).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    transformers = _transformers()

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_texts(), trainer=trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        padding_side="left",
        chat_template=CHATML_TEMPLATE,
        model_max_length=1024,
    )


def _llama_config(tokenizer: Any, **extra: Any) -> Any:
    """The shared tiny Llama architecture (~200k parameters, under 1 MB in float32)."""
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<pad>")
    bos_id = tokenizer.convert_tokens_to_ids("<|im_start|>")
    return _transformers().LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        **extra,
    )


def _build(path: str | Path, *, kind: str, seed: int, vocab_size: int) -> Path:
    """Build a model of ``kind`` ("chat" or "reward") into ``path`` atomically."""

    def write(folder: Path) -> None:
        import torch

        transformers = _transformers()
        tokenizer = build_tiny_tokenizer(vocab_size=vocab_size)
        torch.manual_seed(seed)
        if kind == "chat":
            model = transformers.LlamaForCausalLM(_llama_config(tokenizer))
            model.generation_config = transformers.GenerationConfig(
                bos_token_id=model.config.bos_token_id,
                eos_token_id=model.config.eos_token_id,
                pad_token_id=model.config.pad_token_id,
                do_sample=True,
                max_new_tokens=16,
            )
        else:
            model = transformers.LlamaForSequenceClassification(
                _llama_config(tokenizer, num_labels=1)
            )
        model.eval()
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return build_atomically(
        path, kind=kind, info={"seed": seed, "vocab_size": vocab_size}, write=write
    )


def build_atomically(
    path: str | Path, *, kind: str, info: dict[str, Any], write: Callable[[Path], None]
) -> Path:
    """Run ``write(folder)`` into a sibling temporary folder, then rename it to ``path``
    with the marker file of ``kind`` written last; a no-op when ``path`` holds a finished
    build of ``kind``.

    A crashed build or two concurrent builders (pytest-xdist) never leave a half-written
    model that later runs would take for a finished one.
    """
    target = Path(path)
    if _is_built(target, kind):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.build-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would survive the rename into place
    try:
        write(tmp)
        (tmp / MARKER_FILE).write_text(json.dumps({"kind": kind, **info}))
        try:
            # Succeeds when the target is missing or an empty folder.
            tmp.rename(target)
        except OSError:
            if _is_built(target, kind):  # a concurrent builder won the race
                return target
            # Existing non-empty folder of the caller's: fill it, marker last.
            target.mkdir(parents=True, exist_ok=True)
            for item in sorted(tmp.iterdir(), key=lambda p: p.name == MARKER_FILE):
                dest = target / item.name
                if dest.is_dir():
                    shutil.rmtree(dest)
                shutil.move(str(item), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_chat_model(path: str | Path, *, seed: int = 0, vocab_size: int = 2048) -> Path:
    """Build (once) a tiny random ``LlamaForCausalLM`` chat model with its tokenizer.

    Returns ``path`` as a ``Path``.  Idempotent: if ``path`` already holds a finished
    build (marker file present) it returns immediately, so session fixtures and
    benchmarks can call it unconditionally.  Loadable with
    ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` and
    servable with ``transformers serve``.
    """
    return _build(path, kind="chat", seed=seed, vocab_size=vocab_size)


def build_tiny_reward_model(path: str | Path, *, seed: int = 0, vocab_size: int = 2048) -> Path:
    """Build (once) a tiny random ``LlamaForSequenceClassification`` reward model.

    Same tokenizer and architecture as :func:`build_tiny_chat_model`, with a single
    output label (a scalar score), which is the shape reward-model scoring code
    expects.  ``config.pad_token_id`` is set so batched scoring finds the last
    non-padding token.  Idempotent like the chat builder.
    """
    return _build(path, kind="reward", seed=seed, vocab_size=vocab_size)
