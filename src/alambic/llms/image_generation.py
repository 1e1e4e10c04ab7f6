"""Image-generation models: text prompts in, images out.

:class:`ImageGenerationModel` is the interface (``load``, ``unload``, ``model_name``,
``generate(prompts, num_generations)``); :class:`OpenAIImageGeneration` speaks OpenAI's
``/v1/images/generations`` through the official SDK, so it also works with any server that
implements that endpoint (``base_url``). The ``ImageGeneration`` step uses them.

Images are returned as raw bytes (PNG, JPEG or WebP, as the server sends them); a prompt whose
request failed gets ``None`` images and the reason.
"""

from __future__ import annotations

import base64
import os
from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from alambic.errors import ErrorKind, MissingAPIKeyError, error_entry
from alambic.llms.typing import GenerationError
from alambic.redaction import register_secret
from alambic.utils.imports import require

__all__ = ["ImageGenerationModel", "ImageOutput", "OpenAIImageGeneration"]


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
