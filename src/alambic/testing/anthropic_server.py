"""A test server for Anthropic's Messages API (``POST /v1/messages``).

Replies follow the documented message shape: ``content`` blocks, ``stop_reason`` and
``usage.input_tokens``/``output_tokens`` (words). A request with ``tools`` and a forced
``tool_choice`` gets a ``tool_use`` block whose ``input`` is a minimal instance of the
tool's ``input_schema``. Errors use the ``{"type": "error", "error": {...}}`` envelope.
"""

from __future__ import annotations

from typing import Any

from alambic.testing.openai_server import schema_instance
from alambic.testing.wire_server import WireTestServer, count_words, last_user_text

__all__ = ["AnthropicTestServer"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicTestServer(WireTestServer):
    name = "anthropic"

    def authorized(self, headers: Any) -> bool:
        bearer = headers.get("Authorization", "") == f"Bearer {self.api_key}"
        return bool(bearer or headers.get("x-api-key") == self.api_key)

    def error_body(self, status: int, message: str) -> Any:
        kind = _ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path != "/v1/messages":
            return 404, self.error_body(404, f"unknown path {path}")
        messages = body.get("messages") or []
        system = body.get("system") or ""
        if isinstance(system, list):
            system = " ".join(str(b.get("text", "")) for b in system)
        prompt_words = count_words(system) + sum(
            count_words(last_user_text([m], m.get("role", ""))) for m in messages
        )
        choice = body.get("tool_choice") or {}
        tools = {t["name"]: t for t in body.get("tools") or []}
        content: list[dict[str, Any]]
        if choice.get("type") == "tool" and choice.get("name") in tools:
            instance = schema_instance(tools[choice["name"]].get("input_schema") or {})
            content = [
                {"type": "tool_use", "id": "toolu_test", "name": choice["name"], "input": instance}
            ]
            out_words = len(str(instance).split())
            stop = "tool_use"
        else:
            text = "reply to: " + last_user_text(messages)
            limit = body.get("max_tokens")
            words = text.split()
            stop = "end_turn"
            if isinstance(limit, int) and len(words) > limit:
                text, stop = " ".join(words[:limit]), "max_tokens"
            content = [{"type": "text", "text": text}]
            out_words = count_words(text)
        return 200, {
            "id": f"msg_test_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "test-model"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_words, "output_tokens": out_words},
        }
