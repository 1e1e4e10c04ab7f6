"""A test server for Cohere's v2 Chat API (``POST /v2/chat``).

Replies have the documented shape: ``message.content`` text items, ``finish_reason`` and
``usage.tokens``/``usage.billed_units`` (words). ``response_format`` with a ``json_schema``
yields a minimal instance of that schema. Errors are ``{"message": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

from alambic.testing.openai_server import schema_instance
from alambic.testing.wire_server import WireTestServer, count_words, last_user_text

__all__ = ["CohereTestServer"]


class CohereTestServer(WireTestServer):
    name = "cohere"

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path != "/v2/chat":
            return 404, self.error_body(404, f"unknown path {path}")
        messages = body.get("messages") or []
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_object":
            text = json.dumps(schema_instance(fmt.get("json_schema") or {}))
        else:
            text = "reply to: " + last_user_text(messages)
        finish = "COMPLETE"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and count_words(text) > limit:
            text, finish = " ".join(text.split()[:limit]), "MAX_TOKENS"
        tokens = {
            "input_tokens": sum(count_words(last_user_text([m], m["role"])) for m in messages),
            "output_tokens": count_words(text),
        }
        return 200, {
            "id": f"chat-{len(self.requests)}",
            "finish_reason": finish,
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "usage": {"billed_units": tokens, "tokens": tokens},
        }
