"""Request handling of the test server: control endpoints, scripted and random faults, rate
limits (the replies themselves are in :mod:`.generation`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from alambic.testing.openai_server.config import (
    _CONFIG_FIELDS,
    _CONTROL_PATHS,
    _GENERATION_PATHS,
    ServerConfig,
    _format_reset,
    _format_seconds,
)
from alambic.testing.openai_server.generation import _Generation
from alambic.testing.openai_server.replies import (
    _DROP,
    _HANG,
    _TRUNCATE,
    _error,
    _json_reply,
    _Reply,
)

if TYPE_CHECKING:
    from alambic.testing.openai_server.protocol import _Connection


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
        self.departures: list[float] = []  # when counted requests ended (same clock)
        self.requests: list[dict[str, Any]] = []
        self.seen: set[bytes] = set()
        self.repeated = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
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
            "cached_tokens": self.cached_tokens,
            "dropped": self.dropped,
            "hung": self.hung,
            "requests": list(self.requests),
        }
        if arrivals:
            snap["arrivals"] = list(self.arrivals)
            snap["departures"] = list(self.departures)
        return snap


class _App(_Generation):
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
            self._account(tokens, reply)
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
        self._account(tokens, reply)
        return reply

    def finish(self, status: int | None) -> None:
        """A counted request is over: ``status`` is what was sent (``None``: nothing)."""
        stats = self.stats
        stats.in_flight -= 1
        stats.departures.append(time.monotonic())
        if status is not None:
            stats.statuses[status] = stats.statuses.get(status, 0) + 1

    def _account(self, tokens: tuple[int, int], reply: _Reply) -> None:
        self.stats.cached_tokens += reply.cached_tokens
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
