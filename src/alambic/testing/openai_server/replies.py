"""What the test server sends for one request (:class:`_Reply`) and its error bodies."""

from __future__ import annotations

import http
import json
from dataclasses import dataclass
from typing import Any, Final

# --------------------------------------------------------------------------- replies

_OK: Final = 0
_DROP: Final = 1
_HANG: Final = 2
_TRUNCATE: Final = 3


@dataclass(slots=True)
class _Reply:
    """What to send for one request, computed synchronously at arrival."""

    status: int
    body: bytes | list[bytes]
    content_type: str = "application/json"
    headers: list[tuple[str, str]] | None = None
    action: int = _OK
    delay: float = 0.0
    chunk_delay: float = 0.0
    #: False for control endpoints, which stay out of the statistics.
    counted: bool = True
    #: Prompt tokens the reply says were served from a prompt cache.
    cached_tokens: int = 0


_REASONS: dict[int, str] = {}


def _reason(status: int) -> str:
    phrase = _REASONS.get(status)
    if phrase is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        _REASONS[status] = phrase
    return phrase


_ERROR_TYPES: Final = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_denied", None),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    429: ("requests", "rate_limit_exceeded"),
}


def _error(
    status: int, message: str | None = None, headers: list[tuple[str, str]] | None = None
) -> _Reply:
    """OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    err_type, code = _ERROR_TYPES.get(status, ("server_error", None))
    if message is None:
        message = (
            "The server had an error while processing your request. Sorry about that!"
            if status >= 500
            else f"Error {status}: {_reason(status)}"
        )
    body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    return _Reply(status, json.dumps(body).encode(), headers=headers)


def _json_reply(data: Any, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(data).encode())
