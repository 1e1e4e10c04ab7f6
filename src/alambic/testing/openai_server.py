"""A fast, deterministic, fault-injecting OpenAI-compatible HTTP server for tests.

Why this exists: alambic's LLM clients, schedulers, retry logic, rate limiters and
crash/resume machinery must be tested against something that *behaves like* the
OpenAI API (same JSON shapes, same status codes and headers, SSE streaming) but is
deterministic, free, offline, and can misbehave on demand: latency, 500s, 429s with or
without ``Retry-After``, a real sliding-window RPM/TPM limit, malformed or truncated
bodies, dropped or hung connections.  A mock at the Python level would not exercise the
HTTP stacks (``openai``/``httpx``, ``aiohttp``) whose error mapping we depend on.

It is written on raw :mod:`asyncio` (an :class:`asyncio.Protocol` with a minimal
HTTP/1.1 parser: keep-alive, pipelining, ``Content-Length`` bodies) and the stdlib
:mod:`json`, with no web framework, because benchmarks push thousands of requests per
second through it and the server must never be the bottleneck being measured.
Measured with ``benchmarks/server_selftest.py`` on the 2-core development machine
(server in its own process, aiohttp client in another, one ``ClientSession``, 64
concurrent requests, 20,000 chat completions): **4,600-6,000 requests/s** non-streaming
(SSE streaming: 2,800-7,000/s, noisier), with the server process at only ~33 % of one
core (about 65 us of server CPU per request): the Python client is the bottleneck, not
the server.  On a machine busy with other work the figure drops with the client's share
of CPU (~1,000-1,500/s was seen under a load average of 6).

Two ways to use it:

* in-process (tests): ``with OpenAITestServer(ServerConfig(...)) as server:`` runs the
  server on its own event loop in a daemon thread; ``server.base_url`` is
  ``http://127.0.0.1:PORT/v1``; ``server.stats``, ``server.reset()`` and
  ``server.update(**knobs)`` inspect and steer it live;
* as a process (benchmarks, so client and server do not share a GIL):
  ``python -m alambic.testing.openai_server --port 0 --latency-ms 20 ...`` prints one line
  ``listening on http://127.0.0.1:PORT`` and serves until SIGTERM/SIGINT;
  :func:`run_server_process` wraps that, and :func:`remote_stats`,
  :func:`remote_reset` and :func:`remote_update` talk to the control endpoints.

Endpoints: ``POST /v1/chat/completions`` (JSON or ``"stream": true`` SSE),
``POST /v1/completions``, ``POST /v1/embeddings``, ``GET /v1/models``, and the control
endpoints ``GET /_stats`` (``?arrivals=0`` omits the timestamp list), ``POST /_reset``,
``GET|POST /_config`` and ``GET /health``.  Control endpoints are never counted, faulted
or authenticated, so observing the server does not change what is observed.

Replies are deterministic: chat answers ``"reply to: <last user message>"`` (choice
``i > 0`` gets the suffix ``" #i"``), legacy completions ``"reply to: <prompt>"``;
``response_format`` of type ``json_schema``/``json_object`` yields a minimal valid JSON
instance; ``max_tokens``/``max_completion_tokens`` truncate to that many words with
``finish_reason="length"``.  "Tokens" are whitespace-separated words everywhere
(``usage``, TPM accounting), which keeps expected values easy to compute in tests.

Fault semantics (applied only to the three ``POST`` generation endpoints):

1. a ``status_sequence`` entry, then ``fail_first_n``, script the first requests
   exactly; a scripted request bypasses rate limits and random faults (an entry of 200
   is a normal answer);
2. otherwise the RPM/TPM sliding windows are checked (rejected requests do not consume
   quota) and a 429 with ``Retry-After`` is returned when full;
3. otherwise one uniform draw from ``random.Random(seed)`` picks at most one of, in
   this order: drop, hang, 500, 429, malformed body, truncated body (so the rates are
   exact probabilities and must sum to at most 1);
4. ``latency_s`` plus uniform ``[0, jitter_s)`` delays every reply, errors included.

Draws happen in arrival order on a single event loop, so with a fixed seed and a
sequential client the fault pattern is reproducible.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import http
import json
import math
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

__all__ = [
    "OpenAITestServer",
    "ReplyFn",
    "ServerConfig",
    "main",
    "remote_reset",
    "remote_stats",
    "remote_update",
    "run_server_process",
    "schema_instance",
    "stop_server_process",
]

#: ``reply(request_json, choice_index) -> content`` overrides the default reply text.
ReplyFn = Callable[[dict[str, Any], int], str]

_MAX_HEADER_BYTES: Final = 64 * 1024
_LISTENING_PREFIX: Final = "listening on "
_GENERATION_PATHS: Final = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
_CONTROL_PATHS: Final = frozenset({"/_stats", "/_reset", "/_config", "/health"})


@dataclass
class ServerConfig:
    """Every knob of the test server.  The defaults describe a perfect server.

    Rates are probabilities in ``[0, 1]``; the seven random-fault rates together must not
    exceed 1 (one draw picks at most one fault).  Times are in seconds.
    """

    host: str = "127.0.0.1"
    port: int = 0
    #: Model id listed by ``GET /v1/models`` (replies echo the *requested* model).
    model: str = "test-model"
    latency_s: float = 0.0
    jitter_s: float = 0.0
    failure_rate: float = 0.0
    rate_429: float = 0.0
    #: ``Retry-After`` value sent with random 429s and scripted 429s; ``None``: no header.
    retry_after_s: float | None = None
    #: Requests allowed per ``rate_window_s`` sliding window (OpenAI: per minute).
    rpm_limit: int | None = None
    #: Tokens (prompt + completion words) allowed per ``rate_window_s`` window.
    tpm_limit: int | None = None
    #: Length of the RPM/TPM sliding window.  Shorten it to test limiters quickly.
    rate_window_s: float = 60.0
    malformed_rate: float = 0.0
    truncated_rate: float = 0.0
    drop_rate: float = 0.0
    hang_rate: float = 0.0
    #: Share of generation requests answered 200 with an empty ``choices`` list.
    empty_rate: float = 0.0
    #: Error replies repeat the request's ``Authorization`` header in their message (as
    #: careless servers and proxies do), to test that alambic never stores or logs the key.
    echo_auth: bool = False
    #: The first N generation requests answer 500 (after any ``status_sequence``).
    fail_first_n: int = 0
    #: HTTP statuses for the first generation requests, in order (200 = answer normally).
    status_sequence: list[int] = field(default_factory=list)
    #: When set, ``Authorization: Bearer <api_key>`` is required (else 401).
    api_key: str | None = None
    #: ``False`` mimics servers that ignore ``n`` and always return one choice.
    honour_n: bool = True
    seed: int = 0
    #: Keep every generation request body in ``stats["requests"]`` (memory grows).
    record_requests: bool = False
    #: Default embedding size (a request's ``dimensions`` wins).
    embedding_dim: int = 8
    #: Delay between SSE chunks of a streamed reply (time-to-first-token tests).
    stream_delay_s: float = 0.0
    #: In-process only: custom reply text; called on the server thread.
    reply: ReplyFn | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` for out-of-range knobs, before they cause odd behaviour."""
        rates = {
            "failure_rate": self.failure_rate,
            "rate_429": self.rate_429,
            "malformed_rate": self.malformed_rate,
            "truncated_rate": self.truncated_rate,
            "drop_rate": self.drop_rate,
            "hang_rate": self.hang_rate,
            "empty_rate": self.empty_rate,
        }
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("the random fault rates must sum to at most 1")
        for name in ("latency_s", "jitter_s", "stream_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.rate_window_s <= 0:
            raise ValueError("rate_window_s must be > 0")
        if self.embedding_dim < 1:
            raise ValueError("embedding_dim must be >= 1")
        for status in self.status_sequence:
            if not 100 <= int(status) <= 599:
                raise ValueError(f"invalid HTTP status in status_sequence: {status}")

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON-serialisable knobs (everything but ``reply``)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.pop("reply")
        data["status_sequence"] = list(self.status_sequence)
        return data


_CONFIG_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(ServerConfig))


# --------------------------------------------------------------------------- helpers


def _words(text: str) -> int:
    """Token count used everywhere: whitespace-separated words."""
    return len(text.split())


def _content_text(content: Any) -> str:
    """Text of a message ``content``: a string or a list of OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def _last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    if messages and isinstance(messages[-1], dict):
        return _content_text(messages[-1].get("content"))
    return ""


def _format_seconds(value: float) -> str:
    """``Retry-After``-style seconds: ``"2"`` for integral values, else ``"0.5"``."""
    return f"{value:g}"


def _format_reset(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` duration format: ``"20ms"``, ``"1.5s"``, ``"6m0s"``."""
    seconds = max(0.0, seconds)
    if seconds < 1.0:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60.0)
    rest = round(rest, 3)
    if minutes:
        return f"{int(minutes)}m{rest:g}s"
    return f"{rest:g}s"


_FORMAT_EXAMPLES: Final = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "x@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "ipv4": "127.0.0.1",
    "duration": "P1D",
}


def _resolve_ref(ref: str, root: Mapping[str, Any]) -> Any:
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in ref.lstrip("#").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return {}
    return node


def schema_instance(schema: Any, root: Any = None, _depth: int = 0) -> Any:
    """A minimal valid instance of a JSON schema (what structured-output tests need).

    Strings are ``"x"`` (or an example for known ``format``), integers ``1``, numbers
    ``1.0``, booleans ``true``, arrays hold one item (or ``minItems``), objects get every
    property; ``enum`` takes its first value, ``const`` its value, ``anyOf``/``oneOf``
    the first non-null branch, and local ``$ref`` (pydantic's ``$defs``) is resolved.
    Numeric bounds are respected.
    """
    root = schema if root is None else root
    if _depth > 32 or not isinstance(schema, Mapping):
        return "x"
    if "$ref" in schema:
        return schema_instance(_resolve_ref(str(schema["$ref"]), root), root, _depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [
                o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")
            ]
            return schema_instance((non_null or options)[0], root, _depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve_ref(part["$ref"], root) if "$ref" in part else part
            for k, v in part.items():
                if k == "properties" and isinstance(v, Mapping):
                    merged["properties"] = {**merged.get("properties", {}), **v}
                else:
                    merged.setdefault(k, v)
        return schema_instance(merged, root, _depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
        else:
            kind = "string"
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: schema_instance(sub, root, _depth + 1) for name, sub in props.items()}
    if kind == "array":
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            return [schema_instance(sub, root, _depth + 1) for sub in prefix]
        count = max(1, int(schema.get("minItems", 1)))
        if schema.get("maxItems") == 0:
            count = 0
        return [schema_instance(schema.get("items", {}), root, _depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        value: float = 1
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "exclusiveMinimum" in schema:
            value = max(value, schema["exclusiveMinimum"] + 1)
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        if "exclusiveMaximum" in schema:
            value = min(value, schema["exclusiveMaximum"] - 1)
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMAT_EXAMPLES:
        return _FORMAT_EXAMPLES[fmt]
    return "x" * max(1, int(schema.get("minLength", 1)))


def _numbered(base: str) -> Callable[[int], str]:
    """Default reply per choice: ``base`` for choice 0, ``f"{base} #{i}"`` after."""

    def reply(i: int) -> str:
        return f"{base} #{i}" if i else base

    return reply


def _embedding(text: str, dim: int) -> list[float]:
    """Deterministic unit vector for ``text`` (same in every process: sha512 seeding)."""
    rng = random.Random(text)
    vec = [rng.uniform(-1.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 6) for v in vec]


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


class _Stats:
    """Counters; mutated only on the server's event loop thread."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.clear()

    def clear(self) -> None:
        """Zero everything but ``in_flight`` (requests still running stay tracked)."""
        self.total = 0
        self.paths: dict[str, int] = {}
        self.statuses: dict[int, int] = {}
        self.max_in_flight = self.in_flight
        self.arrivals: list[float] = []
        self.requests: list[dict[str, Any]] = []
        self.seen: set[bytes] = set()
        self.repeated = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.dropped = 0
        self.hung = 0

    def snapshot(self, *, arrivals: bool = True) -> dict[str, Any]:
        snap: dict[str, Any] = {
            "total_requests": self.total,
            "paths": dict(self.paths),
            "statuses": dict(self.statuses),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "repeated_requests": self.repeated,
            "unique_requests": len(self.seen),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "dropped": self.dropped,
            "hung": self.hung,
            "requests": list(self.requests),
        }
        if arrivals:
            snap["arrivals"] = list(self.arrivals)
        return snap


class _App:
    """Request handling and state.  Everything runs on one event loop thread."""

    def __init__(self, config: ServerConfig) -> None:
        config.validate()
        self.config = config
        self.stats = _Stats()
        self.rng = random.Random(config.seed)
        self.scripted_pos = 0
        self.req_window: deque[float] = deque()
        self.tok_window: deque[tuple[float, int]] = deque()
        self.tok_in_window = 0
        self.id_counter = 0
        self.connections: set[_Connection] = set()

    # ----------------------------------------------------------------- control

    def reset(self) -> None:
        """Zero counters, rate windows and scripted position; reseed the RNG."""
        self.stats.clear()
        self.rng = random.Random(self.config.seed)
        self.scripted_pos = 0
        self.req_window.clear()
        self.tok_window.clear()
        self.tok_in_window = 0

    def update(self, knobs: Mapping[str, Any]) -> None:
        unknown = set(knobs) - _CONFIG_FIELDS
        if unknown:
            raise ValueError(f"unknown server config fields: {sorted(unknown)}")
        if "status_sequence" in knobs:
            knobs = {**knobs, "status_sequence": [int(s) for s in knobs["status_sequence"] or []]}
        new = dataclasses.replace(self.config, **knobs)
        new.validate()
        self.config = new
        if "seed" in knobs:
            self.rng = random.Random(new.seed)
        if "status_sequence" in knobs or "fail_first_n" in knobs:
            self.scripted_pos = 0

    def _control(self, method: str, path: str, query: str, body: bytes) -> _Reply:
        if path == "/health":
            return _json_reply({"status": "ok"})
        if path == "/_stats":
            return _json_reply(self.stats.snapshot(arrivals="arrivals=0" not in query))
        if path == "/_reset":
            if method != "POST":
                return _error(405)
            self.reset()
            return _json_reply({"ok": True})
        # /_config
        if method == "POST":
            try:
                knobs = json.loads(body or b"{}")
                if not isinstance(knobs, dict):
                    raise ValueError("the body must be a JSON object")
                if "reply" in knobs:
                    raise ValueError("reply can only be set in-process")
                self.update(knobs)
            except (ValueError, TypeError) as exc:
                return _error(400, str(exc))
        return _json_reply(self.config.to_json_dict())

    # ----------------------------------------------------------------- requests

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        path, _, query = target.partition("?")
        if path.startswith("/v1/_") or path == "/v1/health":
            path = path[3:]
        if path in _CONTROL_PATHS:
            try:
                reply = self._control(method, path, query, body)
            except Exception as exc:
                reply = _error(500, f"test server error: {exc!r}")
            reply.counted = False
            return reply

        stats = self.stats
        stats.in_flight += 1
        if stats.in_flight > stats.max_in_flight:
            stats.max_in_flight = stats.in_flight
        stats.total += 1
        stats.paths[path] = stats.paths.get(path, 0) + 1
        now = time.monotonic()
        stats.arrivals.append(now)
        try:
            reply = self._handle_counted(method, path, headers, body, now)
        except Exception as exc:  # a server bug or a failing reply callable: answer 500
            return _error(500, f"test server error: {exc!r}")
        if self.config.echo_auth and reply.status >= 400 and reply.status != 401:
            echoed = _error(
                reply.status,
                f"Error {reply.status} for request with authorization "
                f"{headers.get('authorization', '')!r}",
                headers=reply.headers,
            )
            echoed.delay = reply.delay
            return echoed
        return reply

    def _handle_counted(
        self, method: str, path: str, headers: dict[str, str], body: bytes, now: float
    ) -> _Reply:
        stats = self.stats
        cfg = self.config

        if cfg.api_key is not None and headers.get("authorization") != f"Bearer {cfg.api_key}":
            if cfg.echo_auth:
                return _error(
                    401, f"Incorrect API key provided: {headers.get('authorization', '')!r}."
                )
            return _error(401, "Incorrect API key provided.")
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if method != "GET":
                return _error(405)
            return self._models(path)
        if path not in _GENERATION_PATHS:
            return _error(404, f"Unknown path: {path}")
        if method != "POST":
            return _error(405)

        # Key by a stable dump so key order / whitespace differences still count as repeats.
        request: dict[str, Any] | None = None
        error = ""
        key = body
        try:
            parsed = json.loads(body)
            if not isinstance(parsed, dict):
                raise ValueError("the body must be a JSON object")
            request = parsed
            key = json.dumps(request, sort_keys=True).encode()
        except ValueError as exc:
            error = str(exc)
        digest = hashlib.blake2b(path.encode() + b"\0" + key, digest_size=16).digest()
        if digest in stats.seen:
            stats.repeated += 1
        else:
            stats.seen.add(digest)
        if cfg.record_requests:
            stats.requests.append({"path": path, "body": request})
        if request is None:
            return _error(400, f"Invalid JSON body: {error}")

        delay = cfg.latency_s
        if cfg.jitter_s:
            delay += self.rng.random() * cfg.jitter_s

        # 1. scripted statuses
        pos = self.scripted_pos
        scripted: int | None = None
        if pos < len(cfg.status_sequence):
            scripted = cfg.status_sequence[pos]
            self.scripted_pos += 1
        elif pos < len(cfg.status_sequence) + cfg.fail_first_n:
            scripted = 500
            self.scripted_pos += 1
        if scripted is not None and scripted != 200:
            reply = self._fault_status(scripted)
            reply.delay = delay
            return reply

        try:
            reply, tokens = self._generate(path, request)
        except (ValueError, TypeError, KeyError) as exc:
            return _error(400, f"Invalid request: {exc}")
        reply.delay = delay
        if scripted is not None:
            self._account(tokens)
            return reply

        # 2. rate limits
        rl_headers = self._rate_limit(now, tokens)
        if rl_headers is not None and rl_headers[0][0] == "retry-after":
            limited = _error(429, "Rate limit reached.", headers=rl_headers)
            limited.delay = delay
            return limited
        reply.headers = rl_headers

        # 3. random faults: one draw, consecutive intervals
        u = self.rng.random()
        edge = cfg.drop_rate
        if u < edge:
            stats.dropped += 1
            reply.action = _DROP
            return reply
        edge += cfg.hang_rate
        if u < edge:
            stats.hung += 1
            reply.action = _HANG
            return reply
        edge += cfg.failure_rate
        if u < edge:
            fault = _error(500, headers=rl_headers)
            fault.delay = delay
            return fault
        edge += cfg.rate_429
        if u < edge:
            fault = self._fault_status(429)
            fault.headers = (rl_headers or []) + (fault.headers or [])
            fault.delay = delay
            return fault
        edge += cfg.malformed_rate
        if u < edge:
            if reply.content_type == "text/event-stream":
                reply.body = b'data: {"id": "chatcmpl-malformed", "choices": [\n\ndata: [DONE]\n\n'
            else:
                reply.body = b'{"id": "chatcmpl-malformed", "choices": [{"index": 0, "message": '
            return reply
        edge += cfg.truncated_rate
        if u < edge:
            reply.action = _TRUNCATE
        elif u < edge + cfg.empty_rate and isinstance(reply.body, bytes):
            data = json.loads(reply.body)
            data["choices"] = []
            reply.body = json.dumps(data).encode()
        self._account(tokens)
        return reply

    def finish(self, status: int | None) -> None:
        """A counted request is over: ``status`` is what was sent (``None``: nothing)."""
        stats = self.stats
        stats.in_flight -= 1
        if status is not None:
            stats.statuses[status] = stats.statuses.get(status, 0) + 1

    def _account(self, tokens: tuple[int, int]) -> None:
        self.stats.prompt_tokens += tokens[0]
        self.stats.completion_tokens += tokens[1]

    def _fault_status(self, status: int) -> _Reply:
        if status == 429:
            headers = None
            if self.config.retry_after_s is not None:
                headers = [("retry-after", _format_seconds(self.config.retry_after_s))]
            return _error(429, "Rate limit reached (injected).", headers=headers)
        if 200 <= status < 300:
            return _json_reply({})
        return _error(status)

    def _rate_limit(self, now: float, tokens: tuple[int, int]) -> list[tuple[str, str]] | None:
        """Sliding-window RPM/TPM check.

        Returns ``None`` when no limit is configured, else the ``x-ratelimit-*`` headers;
        when the request is over a limit the list starts with ``retry-after``.
        """
        cfg = self.config
        if cfg.rpm_limit is None and cfg.tpm_limit is None:
            return None
        window = cfg.rate_window_s
        horizon = now - window
        reqs = self.req_window
        while reqs and reqs[0] <= horizon:
            reqs.popleft()
        toks = self.tok_window
        while toks and toks[0][0] <= horizon:
            self.tok_in_window -= toks.popleft()[1]
        cost = tokens[0] + tokens[1]

        wait = 0.0
        if cfg.rpm_limit is not None and len(reqs) >= cfg.rpm_limit:
            wait = reqs[len(reqs) - cfg.rpm_limit] + window - now if cfg.rpm_limit > 0 else window
        if cfg.tpm_limit is not None and self.tok_in_window + cost > cfg.tpm_limit:
            # Wait until enough old tokens leave the window (or a whole window).
            excess = self.tok_in_window + cost - cfg.tpm_limit
            tok_wait = window
            freed = 0
            for ts, n in toks:
                freed += n
                if freed >= excess:
                    tok_wait = ts + window - now
                    break
            wait = max(wait, tok_wait)
        limited = wait > 0.0 or (cfg.rpm_limit is not None and len(reqs) >= cfg.rpm_limit)
        if not limited:
            reqs.append(now)
            if cfg.tpm_limit is not None:
                toks.append((now, cost))
                self.tok_in_window += cost

        headers: list[tuple[str, str]] = []
        if limited:
            wait = max(wait, 0.001)
            headers.append(("retry-after", str(max(1, math.ceil(wait)))))
            headers.append(("retry-after-ms", str(max(1, math.ceil(wait * 1000)))))
        if cfg.rpm_limit is not None:
            # OpenAI semantics: time until the limit is back to its initial state
            # (``retry-after`` on a 429 says when the *next* slot frees).
            reset = reqs[-1] + window - now if reqs else 0.0
            headers += [
                ("x-ratelimit-limit-requests", str(cfg.rpm_limit)),
                ("x-ratelimit-remaining-requests", str(max(0, cfg.rpm_limit - len(reqs)))),
                ("x-ratelimit-reset-requests", _format_reset(reset)),
            ]
        if cfg.tpm_limit is not None:
            reset = toks[-1][0] + window - now if toks else 0.0
            headers += [
                ("x-ratelimit-limit-tokens", str(cfg.tpm_limit)),
                ("x-ratelimit-remaining-tokens", str(max(0, cfg.tpm_limit - self.tok_in_window))),
                ("x-ratelimit-reset-tokens", _format_reset(reset)),
            ]
        return headers

    # ----------------------------------------------------------------- endpoints

    def _models(self, path: str) -> _Reply:
        model = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "alambic"}
        if path == "/v1/models":
            return _json_reply({"object": "list", "data": [model]})
        wanted = path[len("/v1/models/") :]
        if wanted == self.config.model:
            return _json_reply(model)
        return _error(404, f"The model '{wanted}' does not exist")

    def _generate(self, path: str, request: dict[str, Any]) -> tuple[_Reply, tuple[int, int]]:
        if path == "/v1/chat/completions":
            return self._chat(request)
        if path == "/v1/completions":
            return self._completions(request)
        return self._embeddings(request)

    def _next_id(self, prefix: str) -> str:
        self.id_counter += 1
        return f"{prefix}-{self.id_counter:08d}"

    def _texts(
        self, request: dict[str, Any], default: Callable[[int], str], count: int
    ) -> tuple[list[tuple[str, str]], int]:
        """(content, finish_reason) per choice, and total completion words."""
        reply_fn = self.config.reply
        limit = request.get("max_completion_tokens")
        if limit is None:
            limit = request.get("max_tokens")
        out: list[tuple[str, str]] = []
        words_total = 0
        for i in range(count):
            text = reply_fn(request, i) if reply_fn is not None else default(i)
            words = text.split()
            finish = "stop"
            if limit is not None and len(words) > int(limit):
                words = words[: max(0, int(limit))]
                text = " ".join(words)
                finish = "length"
            words_total += len(words)
            out.append((text, finish))
        return out, words_total

    def _choice_count(self, request: dict[str, Any]) -> int:
        n = request.get("n")
        if not self.config.honour_n or n is None:
            return 1
        if int(n) < 1:
            raise ValueError("n must be >= 1")
        return int(n)

    def _chat(self, request: dict[str, Any]) -> tuple[_Reply, tuple[int, int]]:
        messages = request["messages"]
        if not isinstance(messages, list):
            raise ValueError("messages must be a list")
        prompt_words = sum(
            _words(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)
        )
        base = f"reply to: {_last_user_text(messages)}"
        fmt = request.get("response_format")
        structured: str | None = None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema") or {}
            structured = json.dumps(schema_instance(spec.get("schema") or {"type": "object"}))
        elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
            structured = json.dumps({"reply": base})

        default = _numbered(base) if structured is None else (lambda _i: structured)
        texts, completion_words = self._texts(request, default, self._choice_count(request))
        model = request.get("model", self.config.model)
        ident = self._next_id("chatcmpl")
        created = int(time.time())
        usage = {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
        }
        tokens = (prompt_words, completion_words)
        if request.get("stream"):
            return self._chat_stream(request, ident, created, model, texts, usage), tokens
        data = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
                for i, (text, finish) in enumerate(texts)
            ],
            "usage": usage,
        }
        return _json_reply(data), tokens

    def _chat_stream(
        self,
        request: dict[str, Any],
        ident: str,
        created: int,
        model: str,
        texts: list[tuple[str, str]],
        usage: dict[str, int],
    ) -> _Reply:
        head = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + json.dumps({**head, "choices": choices, **extra}).encode() + b"\n\n"

        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        chunks: list[bytes] = []
        for i, (text, finish) in enumerate(texts):
            delta0 = {"role": "assistant", "content": ""}
            chunks.append(
                chunk([{"index": i, "delta": delta0, "finish_reason": None, "logprobs": None}])
            )
            for j, word in enumerate(text.split(" ")):
                piece = word if j == 0 else " " + word
                if piece:
                    delta = {"content": piece}
                    chunks.append(
                        chunk(
                            [{"index": i, "delta": delta, "finish_reason": None, "logprobs": None}]
                        )
                    )
            chunks.append(
                chunk([{"index": i, "delta": {}, "finish_reason": finish, "logprobs": None}])
            )
        if include_usage:
            chunks.append(chunk([], usage=usage))
        chunks.append(b"data: [DONE]\n\n")
        return _Reply(200, chunks, "text/event-stream", chunk_delay=self.config.stream_delay_s)

    def _completions(self, request: dict[str, Any]) -> tuple[_Reply, tuple[int, int]]:
        prompt = request.get("prompt", "")
        prompts = (
            prompt
            if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt)
            else [prompt]
        )
        prompts = [p if isinstance(p, str) else json.dumps(p) for p in prompts] or [""]
        n = self._choice_count(request)
        prompt_words = sum(_words(p) for p in prompts)
        texts: list[tuple[str, str]] = []
        completion_words = 0
        for p in prompts:
            part, words = self._texts(request, _numbered(f"reply to: {p}"), n)
            texts += part
            completion_words += words
        model = request.get("model", self.config.model)
        ident = self._next_id("cmpl")
        created = int(time.time())
        usage = {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
        }
        tokens = (prompt_words, completion_words)
        if request.get("stream"):
            head = {"id": ident, "object": "text_completion", "created": created, "model": model}
            chunks = []
            for i, (text, finish) in enumerate(texts):
                pieces = text.split(" ")
                for j, word in enumerate(pieces):
                    last = j == len(pieces) - 1
                    choice = {
                        "index": i,
                        "text": word if j == 0 else " " + word,
                        "logprobs": None,
                        "finish_reason": finish if last else None,
                    }
                    chunks.append(
                        b"data: " + json.dumps({**head, "choices": [choice]}).encode() + b"\n\n"
                    )
            if (request.get("stream_options") or {}).get("include_usage"):
                chunks.append(
                    b"data: "
                    + json.dumps({**head, "choices": [], "usage": usage}).encode()
                    + b"\n\n"
                )
            chunks.append(b"data: [DONE]\n\n")
            return _Reply(
                200, chunks, "text/event-stream", chunk_delay=self.config.stream_delay_s
            ), tokens
        data = {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": i, "text": text, "logprobs": None, "finish_reason": finish}
                for i, (text, finish) in enumerate(texts)
            ],
            "usage": usage,
        }
        return _json_reply(data), tokens

    def _embeddings(self, request: dict[str, Any]) -> tuple[_Reply, tuple[int, int]]:
        raw = request["input"]
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            raw = [raw]
        if not isinstance(raw, list):
            raise ValueError("input must be a string or a list")
        texts = [item if isinstance(item, str) else " ".join(map(str, item)) for item in raw]
        dim = int(request.get("dimensions") or self.config.embedding_dim)
        as_b64 = request.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec: Any = _embedding(text, dim)
            if as_b64:
                vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        words = sum(_words(t) for t in texts)
        body = {
            "object": "list",
            "data": data,
            "model": request.get("model", self.config.model),
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }
        return _json_reply(body), (words, 0)


# --------------------------------------------------------------------------- HTTP


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection.  Requests are answered in order.

    The fast path (no delay, no fault needing the event loop) parses and answers inside
    ``data_received`` without creating a task; anything that must wait runs in one task,
    and parsing of further pipelined requests resumes when it finishes.
    """

    def __init__(self, app: _App) -> None:
        self.app = app
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.app.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None:
            self._process()

    def _process(self) -> None:
        buf = self.buf
        while not self.closed and buf:
            end_head = buf.find(b"\r\n\r\n")
            if end_head < 0:
                if len(buf) > _MAX_HEADER_BYTES:
                    self._send_and_close(_error(431))
                return
            try:
                lines = buf[:end_head].decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self._send_and_close(_error(400, "Malformed HTTP request"))
                return
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._send_and_close(_error(411, "Only Content-Length bodies are supported"))
                return
            end = end_head + 4 + length
            if len(buf) < end:
                return
            body = bytes(buf[end_head + 4 : end])
            del buf[:end]
            conn = headers.get("connection", "").lower()
            keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"

            app = self.app
            reply = app.handle(method, target, headers, body)
            if reply.delay > 0 or reply.action != _OK or reply.chunk_delay > 0:
                self.task = asyncio.get_running_loop().create_task(self._slow(reply, keep_alive))
                return
            self._send(reply, keep_alive)
            if reply.counted:
                app.finish(reply.status)
            if not keep_alive:
                self._close()
                return

    async def _slow(self, reply: _Reply, keep_alive: bool) -> None:
        """Answer a request that must wait (latency, hang, drop, delayed chunks)."""
        sent: int | None = None
        try:
            if reply.delay > 0:
                await asyncio.sleep(reply.delay)
            if reply.action == _HANG:
                await asyncio.get_running_loop().create_future()  # until cancelled
            elif reply.action == _DROP:
                self._close(abort=True)
            elif reply.action == _TRUNCATE:
                self._send(reply, keep_alive, truncate=True)
                self._close()
                sent = reply.status
            elif reply.chunk_delay > 0 and isinstance(reply.body, list):
                self._write_head(reply, sum(map(len, reply.body)), keep_alive)
                assert self.transport is not None
                for i, chunk in enumerate(reply.body):
                    if i:
                        await asyncio.sleep(reply.chunk_delay)
                    if self.closed:
                        return
                    self.transport.write(chunk)
                sent = reply.status
            else:
                self._send(reply, keep_alive)
                sent = reply.status
            if not keep_alive:
                self._close()
        finally:
            if reply.counted:
                self.app.finish(sent)
            self.task = None
        if not self.closed and self.buf:
            self._process()

    def _write_head(self, reply: _Reply, length: int, keep_alive: bool) -> None:
        assert self.transport is not None
        head = (
            f"HTTP/1.1 {reply.status} {_reason(reply.status)}\r\n"
            f"content-type: {reply.content_type}\r\n"
            f"content-length: {length}\r\n"
        )
        if reply.headers:
            head += "".join(f"{k}: {v}\r\n" for k, v in reply.headers)
        if reply.content_type == "text/event-stream":
            head += "cache-control: no-cache\r\n"
        if not keep_alive:
            head += "connection: close\r\n"
        self.transport.write(head.encode("latin-1") + b"\r\n")

    def _send(self, reply: _Reply, keep_alive: bool, truncate: bool = False) -> None:
        if self.closed or self.transport is None:
            return
        body = reply.body if isinstance(reply.body, bytes) else b"".join(reply.body)
        self._write_head(reply, len(body), keep_alive)
        self.transport.write(body[: len(body) // 2] if truncate else body)

    def _send_and_close(self, reply: _Reply) -> None:
        self._send(reply, keep_alive=False)
        self._close()

    def _close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


async def _create_server(app: _App) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: _Connection(app), app.config.host, app.config.port, backlog=4096, reuse_address=True
    )


async def _shutdown(server: asyncio.Server, app: _App) -> None:
    """Close the listening socket, abort every connection and finish pending tasks."""
    server.close()
    for conn in list(app.connections):
        conn._close(abort=True)
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0)  # let connection_lost callbacks run


# --------------------------------------------------------------------------- in-process


class OpenAITestServer:
    """The test server on its own event loop in a daemon thread.

    ``start()`` returns the base URL (``http://127.0.0.1:PORT/v1``) to give to an OpenAI
    client.  ``stats``, ``reset()`` and ``update()`` run on the server thread, so they
    see a consistent state and are safe to call while requests are in flight.
    """

    def __init__(self, config: ServerConfig | None = None, **knobs: Any) -> None:
        config = dataclasses.replace(config or ServerConfig(), **knobs)
        self._app = _App(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Start serving (idempotent) and return the ``/v1`` base URL."""
        if self._thread is not None:
            return self.base_url
        ready = threading.Event()
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=self._run, args=(ready, errors), name="openai-test-server", daemon=True
        )
        thread.start()
        ready.wait()
        if errors:
            thread.join()
            raise errors[0]
        self._thread = thread
        return self.base_url

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            try:
                server = loop.run_until_complete(_create_server(self._app))
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            self._loop, self._server = loop, server
            self._port = int(server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()
            loop.run_until_complete(_shutdown(server, self._app))
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop serving: close the socket and abort open connections (hung ones too)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = self._loop = self._server = None

    def __enter__(self) -> OpenAITestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ inspection

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def url(self) -> str:
        """Root URL (control endpoints live here): ``http://127.0.0.1:PORT``."""
        return f"http://{self._app.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL: ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    @property
    def config(self) -> ServerConfig:
        """The live configuration (treat as read-only; change it with :meth:`update`)."""
        return self._app.config

    def _call(self, fn: Callable[[], Any]) -> Any:
        loop = self._loop
        if loop is None or not loop.is_running() or self._thread is threading.current_thread():
            return fn()
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(fn())
            except BaseException as exc:
                result.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return result.result(timeout=10)

    @property
    def stats(self) -> dict[str, Any]:
        """Snapshot: ``total_requests``, ``paths``, ``statuses`` (int keys), ``in_flight``,
        ``max_in_flight``, ``arrivals`` (``time.monotonic()`` values), ``repeated_requests``,
        ``unique_requests``, token totals, ``dropped``, ``hung`` and ``requests`` (bodies,
        only with ``record_requests``)."""
        snap: dict[str, Any] = self._call(self._app.stats.snapshot)
        return snap

    def reset(self) -> None:
        """Zero the counters, rate windows and scripted position; reseed the RNG."""
        self._call(self._app.reset)

    def update(self, **knobs: Any) -> None:
        """Change config knobs live (e.g. ``update(failure_rate=0.5)``).

        Setting ``seed`` reseeds the RNG; setting ``status_sequence`` or ``fail_first_n``
        restarts the script from its first entry.
        """
        self._call(lambda: self._app.update(knobs))


# --------------------------------------------------------------------------- process mode


def _root_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _http_json(url: str, body: Any = None, timeout: float = 10.0) -> Any:
    # No proxies: the server is on 127.0.0.1 and *_proxy variables must not interfere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url,
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    with opener.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def remote_stats(base_url: str, *, arrivals: bool = True) -> dict[str, Any]:
    """``GET /_stats`` of a server (any process); status keys converted back to ``int``."""
    query = "" if arrivals else "?arrivals=0"
    stats: dict[str, Any] = _http_json(f"{_root_url(base_url)}/_stats{query}")
    stats["statuses"] = {int(k): v for k, v in stats["statuses"].items()}
    return stats


def remote_reset(base_url: str) -> None:
    """``POST /_reset`` a server (any process)."""
    _http_json(f"{_root_url(base_url)}/_reset", {})


def remote_update(base_url: str, **knobs: Any) -> dict[str, Any]:
    """``POST /_config`` a server (any process); returns its new configuration."""
    config: dict[str, Any] = _http_json(f"{_root_url(base_url)}/_config", knobs)
    return config


def _pythonpath_with_package(env: Mapping[str, str]) -> str:
    """PYTHONPATH that lets the child import this ``alambic`` even if not installed."""
    src = str(Path(__file__).resolve().parents[2])
    parts = [src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    return os.pathsep.join(parts)


def run_server_process(
    config: ServerConfig | None = None,
    *,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    **knobs: Any,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server as a subprocess; return ``(process, base_url)`` once it listens.

    A separate process keeps the server off the client's GIL, which benchmarks need.
    The child gets the whole config as ``--config-json`` (``reply`` cannot cross a
    process boundary and is rejected).  Stop it with :func:`stop_server_process`.
    """
    config = dataclasses.replace(config or ServerConfig(), **knobs)
    if config.reply is not None:
        raise ValueError("a reply callable cannot be sent to a server process")
    config.validate()
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = _pythonpath_with_package(child_env)
    cmd = [
        sys.executable,
        "-m",
        "alambic.testing.openai_server",
        "--config-json",
        json.dumps(config.to_json_dict()),
    ]
    # Unbuffered bytes: ``select`` then sees exactly what ``readline`` has not consumed.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0, env=child_env)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stop_server_process(proc)
            raise TimeoutError(f"the test server did not start within {timeout} s")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if not ready:
            continue
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            code = proc.wait()
            proc.stdout.close()
            raise RuntimeError(f"the test server process exited with code {code} before listening")
        if line.startswith(_LISTENING_PREFIX):
            return proc, line[len(_LISTENING_PREFIX) :].strip() + "/v1"


def stop_server_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a server started by :func:`run_server_process` and release its pipe."""
    from alambic.testing.processes import stop_process

    stop_process(proc, timeout)
    if proc.stdout is not None:
        proc.stdout.close()


async def _serve_until_signal(config: ServerConfig) -> None:
    app = _App(config)
    server = await _create_server(app)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"{_LISTENING_PREFIX}http://{config.host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await _shutdown(server, app)


def _parse_args(argv: Sequence[str] | None) -> ServerConfig:
    p = argparse.ArgumentParser(
        prog="python -m alambic.testing.openai_server",
        description="Deterministic, fault-injecting OpenAI-compatible test server.",
    )
    p.add_argument("--config-json", help="a JSON object of ServerConfig fields (flags override)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None, help="0 picks a free port (default)")
    p.add_argument("--model", default=None)
    p.add_argument("--latency-ms", type=float, default=None)
    p.add_argument("--jitter-ms", type=float, default=None)
    p.add_argument("--failure-rate", type=float, default=None)
    p.add_argument("--rate-429", type=float, default=None)
    p.add_argument("--retry-after", type=float, default=None, help="seconds, sent with 429s")
    p.add_argument("--rpm-limit", type=int, default=None)
    p.add_argument("--tpm-limit", type=int, default=None)
    p.add_argument("--rate-window", type=float, default=None, help="seconds (default 60)")
    p.add_argument("--malformed-rate", type=float, default=None)
    p.add_argument("--truncated-rate", type=float, default=None)
    p.add_argument("--drop-rate", type=float, default=None)
    p.add_argument("--hang-rate", type=float, default=None)
    p.add_argument("--empty-rate", type=float, default=None)
    p.add_argument("--fail-first-n", type=int, default=None)
    p.add_argument("--status-sequence", default=None, help="comma-separated, e.g. 429,429,200")
    p.add_argument("--api-key", default=None)
    p.add_argument("--no-honour-n", action="store_true", help="ignore n: always one choice")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--record-requests", action="store_true")
    p.add_argument("--embedding-dim", type=int, default=None)
    p.add_argument("--stream-delay-ms", type=float, default=None)
    args = p.parse_args(argv)

    knobs: dict[str, Any] = json.loads(args.config_json) if args.config_json else {}
    direct = (
        "host", "port", "model", "failure_rate", "rate_429", "rpm_limit", "tpm_limit",
        "malformed_rate", "truncated_rate", "drop_rate", "hang_rate", "empty_rate", "fail_first_n",
        "api_key", "seed", "embedding_dim",
    )  # fmt: skip
    for name in direct:
        value = getattr(args, name)
        if value is not None:
            knobs[name] = value
    for flag, name in (
        ("latency_ms", "latency_s"),
        ("jitter_ms", "jitter_s"),
        ("stream_delay_ms", "stream_delay_s"),
    ):
        if getattr(args, flag) is not None:
            knobs[name] = getattr(args, flag) / 1000.0
    if args.retry_after is not None:
        knobs["retry_after_s"] = args.retry_after
    if args.rate_window is not None:
        knobs["rate_window_s"] = args.rate_window
    if args.status_sequence:
        knobs["status_sequence"] = [int(s) for s in args.status_sequence.split(",") if s.strip()]
    if args.no_honour_n:
        knobs["honour_n"] = False
    if args.record_requests:
        knobs["record_requests"] = True
    unknown = set(knobs) - _CONFIG_FIELDS
    if unknown or "reply" in knobs:
        p.error(f"unknown config fields: {sorted(unknown | ({'reply'} & set(knobs)))}")
    config = ServerConfig(**knobs)
    try:
        config.validate()
    except ValueError as exc:
        p.error(str(exc))
    return config


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point: serve until SIGTERM/SIGINT."""
    config = _parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signal(config))


if __name__ == "__main__":
    main()
