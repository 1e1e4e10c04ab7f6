"""Image-generation models: text prompts in, images out.

:class:`ImageGenerationModel` is the interface (``load``, ``unload``, ``model_name``,
``generate(prompts, num_generations)``); :class:`OpenAIImageGeneration` speaks OpenAI's
``/v1/images/generations`` through the official SDK, so it also works with any server that
implements that endpoint (``base_url``). The ``ImageGeneration`` step uses them.

:class:`DiffusersImageGeneration` runs a local ``diffusers`` text-to-image pipeline (Stable
Diffusion, SDXL, FLUX...: whatever ``AutoPipelineForText2Image`` loads) in this process.

Images are returned as raw bytes (PNG, JPEG or WebP, as the server sends them; PNG from a local
pipeline); a prompt whose request failed gets ``None`` images and the reason.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, SecretStr

from alambic.errors import ErrorKind, MissingAPIKeyError, ModelNotAvailableError, error_entry
from alambic.llms.typing import GenerationError
from alambic.redaction import register_secret
from alambic.utils.imports import require

__all__ = [
    "DiffusersImageGeneration",
    "ImageGenerationModel",
    "ImageOutput",
    "OpenAIImageGeneration",
]


class ImageOutput(BaseModel):
    """The images for one prompt: ``num_generations`` entries, ``None`` where one failed."""

    images: list[bytes | None]
    errors: list[GenerationError | None]


class ImageGenerationModel(BaseModel, ABC):
    """Base of image-generation backends (keyword-only, serialisable settings)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    generation_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Sent with every request (size, quality...)."
    )

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model's name, written to the ``model_name`` column."""

    def load(self) -> None:
        """Check dependencies and credentials before any prompt is sent."""

    def unload(self) -> None:
        """Release clients or weights."""

    @abstractmethod
    def generate(self, prompts: list[str], num_generations: int = 1) -> list[ImageOutput]:
        """One :class:`ImageOutput` per prompt, in order."""


class OpenAIImageGeneration(ImageGenerationModel):
    """OpenAI's images API (``gpt-image-1``, ``dall-e-3``...) or a server speaking it.

    The key comes from ``api_key`` or ``OPENAI_API_KEY``; a server on this machine needs none.
    ``generation_kwargs`` go to ``images.generate`` (``size="1024x1024"``, ``quality``...).
    Images are requested as base64 (``response_format="b64_json"``) so nothing is fetched
    from a second URL.
    """

    model: str = Field(default="gpt-image-1", description="The image model.")
    base_url: str | None = Field(default=None, description="Server URL; default: OpenAI's.")
    api_key: SecretStr | None = Field(default=None, repr=False, exclude=True)
    timeout: float = Field(default=120.0, gt=0, description="Seconds per request.")
    max_retries: int = Field(default=2, ge=0, description="SDK retries of a failed request.")

    _client: Any = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        return self.model

    def _key(self) -> str:
        from alambic.llms.provider import is_loopback_url

        if self.api_key is not None:
            key = self.api_key.get_secret_value()
            register_secret(key)  # never in a stored or logged error text
            return key
        env = os.environ.get("OPENAI_API_KEY")
        if env:
            register_secret(env)
            return env
        if is_loopback_url(self.base_url):
            return "no-key-needed"
        raise MissingAPIKeyError(
            f"OpenAIImageGeneration(model={self.model!r}) has no API key: set the "
            "OPENAI_API_KEY environment variable or pass api_key=... "
            f"(server: {self.base_url or 'https://api.openai.com/v1'})."
        )

    def load(self) -> None:
        openai = require("openai", feature="OpenAIImageGeneration", extra="openai")
        if self._client is None:
            self._client = openai.OpenAI(
                api_key=self._key(),
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )

    def unload(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def generate(self, prompts: list[str], num_generations: int = 1) -> list[ImageOutput]:
        if self._client is None:
            self.load()
        outputs: list[ImageOutput] = []
        for prompt in prompts:
            try:
                response = self._client.images.generate(
                    model=self.model,
                    prompt=prompt,
                    n=num_generations,
                    response_format="b64_json",
                    **self.generation_kwargs,
                )
                images: list[bytes | None] = [
                    base64.b64decode(item.b64_json) if item.b64_json else None
                    for item in response.data
                ][:num_generations]
                images += [None] * (num_generations - len(images))
                missing = error_entry(
                    ErrorKind.INVALID_RESPONSE, "the server returned no image", type="EmptyReply"
                )
                errors: list[GenerationError | None] = [
                    None if image is not None else missing for image in images
                ]
            except Exception as exc:  # a failed request is a failed row, with the reason
                kind = ErrorKind.INVALID_RESPONSE
                error = error_entry(kind, _safe_message(exc, self.api_key), type=exc)
                images, errors = [None] * num_generations, [error] * num_generations
            outputs.append(ImageOutput(images=images, errors=errors))
        return outputs


def _safe_message(exc: BaseException, key: SecretStr | None) -> str:
    text = str(exc)
    if key is not None:
        text = text.replace(key.get_secret_value(), "***")
    env = os.environ.get("OPENAI_API_KEY")
    return text.replace(env, "***") if env else text


class DiffusersImageGeneration(ImageGenerationModel):
    """A local ``diffusers`` text-to-image pipeline, run in this process.

    ``model`` is a local pipeline folder or a hub id, loaded once at ``load()`` with
    ``diffusers.AutoPipelineForText2Image``. Prompts go to the pipeline ``batch_size`` at a
    time, each asking ``num_images_per_prompt=num_generations``; ``generation_kwargs`` go to
    the call (``num_inference_steps``, ``guidance_scale``, ``height``, ``width``,
    ``negative_prompt``...), except ``seed``, which seeds a ``torch.Generator`` once per
    call so a rerun draws the same images. Images are returned as PNG bytes. Runs on the CPU
    unless ``device`` says otherwise (``"cuda"``, ``"mps"``, or ``"auto"``: the first GPU
    torch sees, else the CPU); ``torch_dtype`` (``"float16"``, ``"bfloat16"``...) defaults
    to the checkpoint's float32.
    """

    model: str = Field(description="Local pipeline folder or Hugging Face hub id.")
    torch_dtype: str = Field(default="auto", description="'auto' (float32), 'float16'...")
    device: str | None = Field(default="cpu", description="'cpu', 'cuda', 'mps' or 'auto'.")
    batch_size: PositiveInt = Field(default=4, description="Prompts per pipeline call.")
    pipeline_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="More from_pretrained(...) arguments (variant...)."
    )

    _pipeline: Any = PrivateAttr(default=None)
    _device: str = PrivateAttr(default="cpu")
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def model_name(self) -> str:
        return self.model

    def load(self) -> None:
        if self._pipeline is not None:
            return
        diffusers = require("diffusers", feature="DiffusersImageGeneration", extra="diffusers")
        torch = require("torch", feature="DiffusersImageGeneration", extra="diffusers")
        kwargs = dict(self.pipeline_kwargs)
        if self.torch_dtype != "auto":
            dtype = getattr(torch, self.torch_dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(
                    f"DiffusersImageGeneration(torch_dtype={self.torch_dtype!r}) is not a torch "
                    "dtype; use 'auto', 'float32', 'float16' or 'bfloat16'."
                )
            kwargs["torch_dtype"] = dtype
        try:
            pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(self.model, **kwargs)
        except OSError as exc:
            raise ModelNotAvailableError(
                f"Could not load the diffusers pipeline {self.model!r}: {exc}. Pass a local "
                "pipeline folder (one with model_index.json), or a hub id where the Hub is "
                "reachable."
            ) from exc
        self._device = _resolve_device(torch, self.device)
        pipeline = pipeline.to(self._device)
        pipeline.set_progress_bar_config(disable=True)
        self._pipeline = pipeline

    def unload(self) -> None:
        self._pipeline = None

    def generate(self, prompts: list[str], num_generations: int = 1) -> list[ImageOutput]:
        import torch

        self.load()
        kwargs = dict(self.generation_kwargs)
        seed = kwargs.pop("seed", None)
        if seed is not None:
            kwargs["generator"] = torch.Generator(device=self._device).manual_seed(int(seed))
        outputs: list[ImageOutput] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start : start + self.batch_size]
                result = self._pipeline(
                    prompt=chunk, num_images_per_prompt=num_generations, **kwargs
                )
                pictures = list(result.images)
                for i in range(len(chunk)):
                    mine = pictures[i * num_generations : (i + 1) * num_generations]
                    images: list[bytes | None] = [_png(p) for p in mine]
                    outputs.append(ImageOutput(images=images, errors=[None] * len(images)))
        return outputs


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _resolve_device(torch: Any, device: str | None) -> str:
    if device != "auto":
        return device or "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"
