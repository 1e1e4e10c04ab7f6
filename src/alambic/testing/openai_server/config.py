"""The test server's knobs (:class:`ServerConfig`) and the helpers that build replies."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

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
    #: Chat replies say this many of their prompt tokens (at most all of them) came from a
    #: prompt cache (``usage.prompt_tokens_details.cached_tokens``), as OpenAI reports it.
    cached_prompt_tokens: int = 0

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
