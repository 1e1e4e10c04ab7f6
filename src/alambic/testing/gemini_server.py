"""A test server for the Gemini API's ``generateContent``
(``POST /{v1,v1beta}/models/{model}:generateContent``), as used by ``google-genai``.

Replies have the documented shape: ``candidates[].content.parts[].text`` (one candidate per
``generationConfig.candidateCount``, the ``i``-th suffixed ``" #i"``) and ``usageMetadata``
(words). ``responseJsonSchema``/``responseSchema`` yield a minimal instance. Errors use
``{"error": {"code", "message", "status"}}``.

Image parts are read as the API reads them: ``inlineData`` (base64 ``data`` and its
``mimeType``; standard or URL-safe base64, as proto3 JSON allows) is decoded into ``images`` (one ``(mime_type, bytes)`` per image, in arrival
order) and ``fileData`` URIs into ``file_uris``; inline data that is not valid base64 or not
an image of its stated type is refused with 400 ``INVALID_ARGUMENT``. Each image counts
258 prompt tokens (Gemini's figure for an image of up to 384x384 pixels), and the reply says
how many images it saw: ``"reply to: <text> [2 images]"``. With
``thinkingConfig.includeThoughts`` each candidate starts with a thought part
(``{"text": "thinking about: <text>", "thought": true}``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from alambic.testing.openai_server import schema_instance
from alambic.testing.wire_server import WireTestServer, count_words

__all__ = ["GeminiTestServer"]

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _text(content: dict[str, Any]) -> str:
    return "".join(str(p.get("text", "")) for p in content.get("parts") or [])


IMAGE_TOKENS = 258
"""Prompt tokens counted per image part."""

_MAGIC = {
    "image/png": b"\x89PNG",
    "image/jpeg": b"\xff\xd8\xff",
    "image/gif": b"GIF8",
    "image/webp": b"RIFF",
}


def _images(contents: list[dict[str, Any]]) -> tuple[list[tuple[str, bytes]], list[str], str]:
    """The inline images and file URIs of ``contents``, or the reason they are refused."""
    inline: list[tuple[str, bytes]] = []
    uris: list[str] = []
    for content in contents:
        for part in content.get("parts") or []:
            blob = part.get("inlineData") or part.get("inline_data")
            if blob is not None:
                mime = str(blob.get("mimeType") or blob.get("mime_type") or "")
                # proto3 JSON: bytes in standard or URL-safe base64, padded or not
                text = str(blob.get("data") or "").replace("-", "+").replace("_", "/")
                try:
                    data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
                except (binascii.Error, ValueError):
                    return [], [], "inlineData.data is not valid base64"
                magic = _MAGIC.get(mime)
                if magic is None or not data.startswith(magic):
                    return [], [], f"inlineData is not a {mime or 'typed'} image"
                inline.append((mime, data))
            file = part.get("fileData") or part.get("file_data")
            if file is not None:
                uris.append(str(file.get("fileUri") or file.get("file_uri")))
    return inline, uris, ""


class GeminiTestServer(WireTestServer):
    name = "gemini"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images: list[tuple[str, bytes]] = []
        self.file_uris: list[str] = []

    def authorized(self, headers: Any) -> bool:
        return bool(headers.get("x-goog-api-key") == self.api_key)

    def error_body(self, status: int, message: str) -> Any:
        return {
            "error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
        }

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        version, _, rest = path.lstrip("/").partition("/")
        if not (version.startswith("v1") and rest.startswith("models/")) or not path.endswith(
            ":generateContent"
        ):
            return 404, self.error_body(404, f"unknown path {path}")
        contents = body.get("contents") or []
        config = body.get("generationConfig") or {}
        inline, uris, refused = _images(contents)
        if refused:
            return 400, self.error_body(400, refused)
        with self._lock:
            self.images.extend(inline)
            self.file_uris.extend(uris)
        users = [c for c in contents if c.get("role", "user") == "user"]
        question = _text(users[-1]) if users else ""
        seen = len(inline) + len(uris)
        if seen:
            question += f" [{seen} image{'s' if seen > 1 else ''}]"
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        limit = config.get("maxOutputTokens")
        thinking = config.get("thinkingConfig") or config.get("thinking_config") or {}
        # proto3 JSON: field names in lowerCamelCase or as declared (snake_case)
        thoughts = bool(thinking.get("includeThoughts") or thinking.get("include_thoughts"))
        candidates = []
        out_words = 0
        for i in range(int(config.get("candidateCount") or 1)):
            text = json.dumps(schema_instance(schema)) if schema else "reply to: " + question
            if i and not schema:
                text += f" #{i}"
            reason = "STOP"
            if isinstance(limit, int) and count_words(text) > limit:
                text, reason = " ".join(text.split()[:limit]), "MAX_TOKENS"
            out_words += count_words(text)
            parts: list[dict[str, Any]] = [{"text": text}]
            if thoughts:
                thought = f"thinking about: {question}"
                out_words += count_words(thought)
                parts.insert(0, {"text": thought, "thought": True})
            candidates.append(
                {
                    "content": {"role": "model", "parts": parts},
                    "finishReason": reason,
                    "index": i,
                }
            )
        system = body.get("systemInstruction") or body.get("system_instruction") or {}
        prompt = count_words(_text(system)) + sum(count_words(_text(c)) for c in contents)
        prompt += IMAGE_TOKENS * seen
        return 200, {
            "candidates": candidates,
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": out_words,
                "totalTokenCount": prompt + out_words,
            },
            "modelVersion": path.split("/")[-1].split(":")[0],
        }
