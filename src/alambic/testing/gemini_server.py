"""A test server for the Gemini API's ``generateContent``
(``POST /{v1,v1beta}/models/{model}:generateContent``), as used by ``google-genai``.

Replies have the documented shape: ``candidates[].content.parts[].text`` (one candidate per
``generationConfig.candidateCount``, the ``i``-th suffixed ``" #i"``) and ``usageMetadata``
(words). ``responseJsonSchema``/``responseSchema`` yield a minimal instance. Errors use
``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

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


class GeminiTestServer(WireTestServer):
    name = "gemini"

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
        users = [c for c in contents if c.get("role", "user") == "user"]
        question = _text(users[-1]) if users else ""
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        limit = config.get("maxOutputTokens")
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
            candidates.append(
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": reason,
                    "index": i,
                }
            )
        system = body.get("systemInstruction") or body.get("system_instruction") or {}
        prompt = count_words(_text(system)) + sum(count_words(_text(c)) for c in contents)
        return 200, {
            "candidates": candidates,
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": out_words,
                "totalTokenCount": prompt + out_words,
            },
            "modelVersion": path.split("/")[-1].split(":")[0],
        }
