"""Build a tiny, random-weight vision-language model (Llava architecture) on the fly, offline.

Why this exists: the image path of :class:`alambic.llms.transformers.TransformersLLM`
(processor chat template, image preprocessing, ``pixel_values`` into ``generate``) needs a
*real* multimodal model folder, and the smallest hub VLMs weigh hundreds of megabytes. This
builder writes a ~1 MB ``LlavaForConditionalGeneration`` (a one-layer CLIP vision tower on
16x16 images, a linear projector, the tiny Llama of :mod:`alambic.testing.tiny_model`) and
its ``LlavaProcessor`` (the tiny BPE tokenizer plus an ``<image>`` token, a CLIP image
processor, a ChatML template that renders image parts as ``<image>``) in a few seconds.

Each image becomes 4 ``<image>`` tokens (2x2 patches of 8 pixels; the CLS feature dropped).
The weights are random: replies are gibberish, but images really reach the model, so
different images give different logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alambic.testing.tiny_model import (
    _llama_config,
    _transformers,
    build_atomically,
    build_tiny_tokenizer,
)

__all__ = ["IMAGE_TOKEN", "IMAGE_TOKENS_PER_IMAGE", "VLM_CHAT_TEMPLATE", "build_tiny_vlm"]

IMAGE_TOKEN = "<image>"
IMAGE_SIZE = 16
PATCH_SIZE = 8
IMAGE_TOKENS_PER_IMAGE = (IMAGE_SIZE // PATCH_SIZE) ** 2

#: ChatML with image parts (``{"type": "image"}``, as processors' templates expect) rendered
#: as the image token; the processor expands each into ``IMAGE_TOKENS_PER_IMAGE`` tokens.
VLM_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- elif part['type'] == 'image' -%}{{- '" + IMAGE_TOKEN + "' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _image_processor(transformers: Any) -> Any:
    # the PIL backend where it is a class of its own (transformers 5 without torchvision)
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )


def build_tiny_vlm(
    path: str | Path, *, seed: int = 0, tokenizer_from: str | Path | None = None
) -> Path:
    """Build (once) a tiny random Llava model with its processor into ``path``.

    ``tokenizer_from`` reuses the tokenizer of a tiny chat model folder (saves training a
    new one, ~2 s). Idempotent like :func:`alambic.testing.tiny_model.build_tiny_chat_model`;
    loadable with ``AutoModelForImageTextToText`` / ``AutoProcessor`` and by
    ``TransformersLLM``.
    """

    def write(folder: Path) -> None:
        import torch

        transformers = _transformers()
        if tokenizer_from is not None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_from))
        else:
            tokenizer = build_tiny_tokenizer()
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
        tokenizer.padding_side = "left"
        vision = transformers.CLIPVisionConfig(
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            projection_dim=32,
        )
        text = _llama_config(tokenizer)  # the tiny chat model's own architecture
        config = transformers.LlavaConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
            vision_feature_select_strategy="default",
            vision_feature_layer=-1,
        )
        torch.manual_seed(seed)
        model = transformers.LlavaForConditionalGeneration(config).eval()
        model.generation_config = transformers.GenerationConfig(
            bos_token_id=text.bos_token_id,
            eos_token_id=text.eos_token_id,
            pad_token_id=text.pad_token_id,
            do_sample=True,
            max_new_tokens=16,
        )
        processor = transformers.LlavaProcessor(
            image_processor=_image_processor(transformers),
            tokenizer=tokenizer,
            patch_size=PATCH_SIZE,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
            chat_template=VLM_CHAT_TEMPLATE,
        )
        model.save_pretrained(folder)
        processor.save_pretrained(folder)

    info: dict[str, Any] = {"seed": seed, "tokenizer_from": str(tokenizer_from or "")}
    return build_atomically(path, kind="vlm", info=info, write=write)
