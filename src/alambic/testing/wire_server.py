"""A small base for test servers that speak one provider's documented HTTP wire format.

Why this exists: each provider client is tested through its official SDK, over real HTTP,
against a server on 127.0.0.1. Where no real server for a protocol runs here (Anthropic
Messages, Cohere v2, Ollama, Gemini), a subclass of :class:`WireTestServer` answers that
protocol's JSON shapes with deterministic replies: ``"reply to: <last user text>"`` (the
``i``-th candidate gets ``" #i"``), and "tokens" counted as whitespace-separated words.

The stdlib ``http.server`` in a daemon thread is plenty for unit tests (the fast OpenAI
server in :mod:`alambic.testing.openai_server` is the one for benchmarks). Faults are
scripted: ``status_sequence=[429, 200]`` answers the first request 429 (with
``Retry-After: retry_after_s``) and the second normally; ``api_key`` makes requests without
that key answer 401. Every request body is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["WireTestServer", "count_words", "last_user_text"]


def count_words(text: str) -> int:
    return len(text.split())


def last_user_text(messages: Sequence[Any], role: str = "user") -> str:
    """The text of the last message with ``role``; content may be a string or text parts."""
    for message in reversed(messages):
        if message.get("role") == role:
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class WireTestServer:
    """Serve ``handle(method, path, body)`` on 127.0.0.1 in a daemon thread."""

    name = "wire"

    def __init__(
        self,
        *,
        status_sequence: Sequence[int] = (),
        retry_after_s: float | None = 0.05,
        api_key: str | None = None,
    ) -> None:
        self.status_sequence = list(status_sequence)
        self.retry_after_s = retry_after_s
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.statuses: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to override -----------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """Answer one request: ``(status, JSON body)``."""
        return 404, self.error_body(404, f"unknown path {path}")

    def error_body(self, status: int, message: str) -> Any:
        """The provider's JSON error envelope."""
        return {"error": {"code": status, "message": message}}

    def authorized(self, headers: Any) -> bool:
        """Whether the request carries ``api_key`` (bearer token by default)."""
        return bool(headers.get("Authorization", "") == f"Bearer {self.api_key}")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        """Start serving and return the root URL ``http://127.0.0.1:PORT``."""
        if self._server is None:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
            server.daemon_threads = True
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, name=f"{self.name}-test-server", daemon=True
            )
            self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WireTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- request flow ----------------------------------------------------------------------

    def _respond(
        self, method: str, target: str, headers: Any, raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        path = target.partition("?")[0]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, self.error_body(400, "the body is not JSON"), {}
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            scripted = self.status_sequence.pop(0) if self.status_sequence else None
        if self.api_key is not None and not self.authorized(headers):
            return 401, self.error_body(401, "invalid API key"), {}
        extra: dict[str, str] = {}
        if scripted is not None and scripted != 200:
            if scripted == 429 and self.retry_after_s is not None:
                extra["Retry-After"] = str(self.retry_after_s)
            return scripted, self.error_body(scripted, f"scripted status {scripted}"), extra
        status, reply = self.handle(method, path, body)
        return status, reply, extra


def _make_handler(server: WireTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, reply, extra = server._respond(self.command, self.path, self.headers, raw)
            with server._lock:
                server.statuses.append(status)
            payload = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
