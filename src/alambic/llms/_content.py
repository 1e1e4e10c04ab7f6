"""Message content with images: OpenAI-format content parts, built from what users hold.

A message's ``content`` is text, or a list of parts in the OpenAI chat format::

    [{"type": "text", "text": "What is in this picture?"},
     {"type": "image_url", "image_url": {"url": "https://... or data:image/png;base64,..."}}]

:func:`image_part` builds an image part from a URL, a local path, base64 text, raw bytes or a
PIL image (local images become ``data:`` URLs, so any OpenAI-compatible server receives
them inline). :func:`content_text` reads the text of either form, and
:func:`to_anthropic_content` converts parts to the Anthropic Messages format.
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
from pathlib import Path
from typing import Any, Literal

from typing_extensions import TypedDict

from alambic.llms.typing import GenerateOutput

__all__ = [
    "ImagePart",
    "ImageURL",
    "TextPart",
    "content_text",
    "decode_data_url",
    "image_part",
    "image_to_data_url",
    "image_urls",
    "load_image",
    "reasoning_of",
    "to_anthropic_content",
    "to_processor_messages",
    "with_reasonings",
]


class TextPart(TypedDict):
    type: Literal["text"]
    text: str


class ImageURL(TypedDict):
    url: str


class ImagePart(TypedDict):
    type: Literal["image_url"]
    image_url: ImageURL


_SIGNATURES = {
    b"\x89PNG": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF8": "image/gif",
    b"RIFF": "image/webp",
    b"BM": "image/bmp",
}


def _sniff(data: bytes) -> str | None:
    for signature, mime in _SIGNATURES.items():
        if data.startswith(signature):
            return mime
    return None


def _data_url(data: bytes, mime: str | None = None) -> str:
    kind = mime or _sniff(data)
    if kind is None:
        raise ValueError(
            "these bytes are not a PNG, JPEG, GIF, WebP or BMP image (unknown signature "
            f"{data[:8]!r})."
        )
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def image_to_data_url(image: Any) -> str:
    """A URL for ``image``: http(s)/data URLs as they are, anything local inline.

    ``image`` is a URL, a path (``str`` or ``Path``) to an image file, base64 text of an
    image, raw image bytes, or a PIL image (sent as PNG).
    """
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return _data_url(buffer.getvalue(), "image/png")
    if isinstance(image, (bytes, bytearray)):
        return _data_url(bytes(image))
    if isinstance(image, Path):
        return _file_url(image)
    if not isinstance(image, str):
        raise TypeError(
            f"an image must be a URL, a path, base64 text, bytes or a PIL image; got "
            f"{type(image).__name__}."
        )
    text = image.strip()
    if text.startswith(("http://", "https://", "data:")):
        return text
    if len(text) < 4096 and Path(text).is_file():
        return _file_url(Path(text))
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(
            f"{text[:60]!r}... is neither a URL, an existing file nor base64 image data."
        ) from exc
    return _data_url(raw)


def _file_url(path: Path) -> str:
    data = path.read_bytes()
    mime = _sniff(data) or mimetypes.guess_type(path.name)[0]
    return _data_url(data, mime)


def image_part(image: Any) -> ImagePart:
    """An OpenAI ``image_url`` content part for ``image`` (see :func:`image_to_data_url`)."""
    return {"type": "image_url", "image_url": {"url": image_to_data_url(image)}}


def decode_data_url(url: str) -> tuple[str, bytes]:
    """The media type and bytes of a base64 ``data:`` URL."""
    header, _, data = url.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64"):
        raise ValueError(f"{url[:40]!r}... is not a base64 data: URL.")
    return header[5:].split(";", 1)[0], base64.b64decode(data)


def image_urls(content: Any) -> list[str]:
    """The URLs of the image parts of a message ``content``, in order."""
    if not isinstance(content, list):
        return []
    return [
        str(part["image_url"]["url"])
        for part in content
        if isinstance(part, dict) and part.get("type") == "image_url"
    ]


def load_image(url: str) -> Any:
    """A PIL image (RGB) from an image part's URL: ``data:`` URLs are decoded here;
    ``http(s)`` URLs are fetched with ``transformers.image_utils.load_image``."""
    from PIL import Image

    image: Any
    if url.startswith("data:"):
        _, data = decode_data_url(url)
        image = Image.open(io.BytesIO(data))
    else:
        from transformers.image_utils import load_image as fetch

        image = fetch(url)
    return image.convert("RGB")


def to_processor_messages(
    messages: Any, *, decode: bool = True
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Messages for a multimodal processor's chat template (each image part becomes
    ``{"type": "image"}``, the form those templates render as the image token) and the
    images, as PIL images, in the order their tokens appear (none with ``decode=False``)."""
    converted: list[dict[str, Any]] = []
    images: list[Any] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            parts: list[dict[str, Any]] = []
            for part in content:
                if part.get("type") == "image_url":
                    if decode:
                        images.append(load_image(str(part["image_url"]["url"])))
                    parts.append({"type": "image"})
                else:
                    parts.append(part)
            content = parts
        converted.append({**message, "content": content})
    return converted, images


def content_text(content: Any) -> str:
    """The text of a message ``content``: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return "" if content is None else str(content)


def to_anthropic_content(content: Any) -> Any:
    """``content`` in the Anthropic Messages format: text stays text; image parts become
    ``{"type": "image", "source": {"type": "base64" | "url", ...}}`` blocks."""
    if not isinstance(content, list):
        return content
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            url = part["image_url"]["url"]
            if url.startswith("data:"):
                header, data = url.split(",", 1)
                media_type = header[5:].split(";", 1)[0]
                source = {"type": "base64", "media_type": media_type, "data": data}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
        else:
            blocks.append(part)
    return blocks


_REASONING_KEYS = ("reasoning_content", "reasoning", "thinking")


def reasoning_of(message: Any) -> str | None:
    """The reasoning an OpenAI-compatible server returned beside a message's content.

    vLLM's reasoning parsers, DeepSeek and SGLang send ``reasoning_content``; newer vLLM,
    OpenRouter and Ollama's compatible endpoint send ``reasoning``. Empty values are ``None``.
    """
    if not isinstance(message, dict):
        return None
    for key in _REASONING_KEYS:
        value = message.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def with_reasonings(out: GenerateOutput, reasonings: list[str | None]) -> GenerateOutput:
    """``out`` (a ``GenerateOutput``) with ``reasonings`` added when any is not ``None``."""
    if any(r is not None for r in reasonings):
        out["reasonings"] = reasonings
    return out
