"""A test server for Ollama's native chat API (``POST /api/chat``, non-streaming).

Replies have the documented shape: ``message``, ``done``/``done_reason`` and the token
counts ``prompt_eval_count``/``eval_count`` (words); ``options.num_predict`` truncates and
``format`` (a JSON schema) yields a minimal instance of it. Errors are ``{"error": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

from alambic.testing.openai_server import schema_instance
from alambic.testing.wire_server import WireTestServer, count_words, last_user_text

__all__ = ["OllamaTestServer"]


class OllamaTestServer(WireTestServer):
    name = "ollama"

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message}

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path != "/api/chat":
            return 404, self.error_body(404, f"unknown path {path}")
        messages = body.get("messages") or []
        fmt = body.get("format")
        if isinstance(fmt, dict):
            text = json.dumps(schema_instance(fmt))
        else:
            text = "reply to: " + last_user_text(messages)
        reason = "stop"
        limit = (body.get("options") or {}).get("num_predict")
        if isinstance(limit, int) and count_words(text) > limit:
            text, reason = " ".join(text.split()[:limit]), "length"
        return 200, {
            "model": body.get("model", ""),
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": reason,
            "prompt_eval_count": sum(count_words(last_user_text([m], m["role"])) for m in messages),
            "eval_count": count_words(text),
        }
