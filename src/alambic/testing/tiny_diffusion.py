"""Build a tiny, random-weight Stable Diffusion pipeline on the fly, offline.

Why this exists: :class:`alambic.llms.image_generation.DiffusersImageGeneration` runs a local
``diffusers`` text-to-image pipeline, and the smallest real checkpoints weigh gigabytes. This
builder writes a ~0.6 MB ``StableDiffusionPipeline`` folder: a two-block
``UNet2DConditionModel`` (8/16 channels, cross-attention on 32-wide text states), a two-block
``AutoencoderKL`` (latents 4x8x8 decode to 16x16 RGB images), a two-layer ``CLIPTextModel``
over the tiny BPE tokenizer of :mod:`alambic.testing.tiny_model`, and a ``DDIMScheduler``.
Its images are noise, but they come out of real denoising and decoding.

``diffusers``, ``torch`` and ``transformers`` are imported inside the function.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from alambic.testing.tiny_model import _transformers, build_atomically, build_tiny_tokenizer

__all__ = ["TINY_IMAGE_SIZE", "build_tiny_diffusion_pipeline"]

TINY_IMAGE_SIZE = 16
"""The pipeline's default image height and width (latent 8x8, VAE scale factor 2)."""

_TEXT_LENGTH = 16


def build_tiny_diffusion_pipeline(
    path: str | Path, *, seed: int = 0, tokenizer_from: str | Path | None = None
) -> Path:
    """Build (once) a tiny random ``StableDiffusionPipeline`` into ``path``.

    ``tokenizer_from`` reuses the tokenizer of a tiny chat model folder. Idempotent like
    :func:`alambic.testing.tiny_model.build_tiny_chat_model`; loadable with
    ``diffusers.AutoPipelineForText2Image.from_pretrained``.
    """

    def write(folder: Path) -> None:
        import torch

        diffusers: Any = importlib.import_module("diffusers")  # partly typed: use it as Any

        transformers: Any = _transformers()
        if tokenizer_from is not None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_from))
        else:
            tokenizer = build_tiny_tokenizer(vocab_size=512)
        tokenizer.model_max_length = _TEXT_LENGTH  # prompts are padded to this length
        tokenizer.padding_side = "right"
        torch.manual_seed(seed)
        text_encoder = transformers.CLIPTextModel(
            transformers.CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=_TEXT_LENGTH,
                projection_dim=32,
                bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
                eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                pad_token_id=tokenizer.convert_tokens_to_ids("<pad>"),
            )
        )
        unet = diffusers.UNet2DConditionModel(
            sample_size=TINY_IMAGE_SIZE // 2,
            in_channels=4,
            out_channels=4,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            norm_num_groups=4,
        )
        vae = diffusers.AutoencoderKL(
            sample_size=TINY_IMAGE_SIZE,
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            norm_num_groups=4,
        )
        scheduler = diffusers.DDIMScheduler(num_train_timesteps=100, clip_sample=False)
        pipeline = diffusers.StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.save_pretrained(folder)

    info: dict[str, Any] = {"seed": seed, "tokenizer_from": str(tokenizer_from or "")}
    return build_atomically(path, kind="diffusion", info=info, write=write)
