"""The content-addressed request cache.

A request's key is a hash of everything that decides its answer: the backend's identity (its
class and settings, never its secrets), the model, the rendered messages, the structured-output
schema, the generation settings and the generation's index, so ``num_generations=3`` stays three
different samples and editing one input row re-requests only that row. The run store provides
the persistent implementation; :class:`InMemoryRequestCache` serves tests and notebooks.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Protocol

from typing_extensions import NotRequired, TypedDict


class CachedGeneration(TypedDict):
    """One answered generation, as stored (``latency_s`` and ``retries``: of the request that
    answered it, where recorded, so a row rebuilt from the cache is the row first made)."""

    text: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_s: NotRequired[float]
    retries: NotRequired[int]
    reasoning: NotRequired[str | None]
    """The reasoning (thinking) the backend returned beside ``text``, kept so that a reply
    served from the cache carries the same ``alambic_metadata`` as the first run's."""


def cached_generation(
    text: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    reasoning: str | None = None,
) -> CachedGeneration:
    """A cache entry; ``reasoning`` only when the backend returned one."""
    entry: CachedGeneration = {
        "text": text,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }
    if reasoning is not None:
        entry["reasoning"] = reasoning
    return entry


class RequestCache(Protocol):
    """Where answered requests are kept; implementations must be thread-safe.

    A cache that batches its writes may also offer ``commit_pending()``: LLMs call it before
    each request they send, so no request leaves while an earlier answer is uncommitted.
    A cache whose lookups cost a query may offer ``async aget_many(keys)``, used on the event
    loop instead of ``get_many`` (the run store's cache answers a loop iteration's lookups
    with one query).
    """

    def get_many(self, keys: list[str]) -> list[CachedGeneration | None]: ...

    def put_many(self, items: list[tuple[str, CachedGeneration]]) -> None: ...


class InMemoryRequestCache:
    """A dict-backed cache, for tests and interactive use."""

    def __init__(self) -> None:
        self._data: dict[str, CachedGeneration] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: list[str]) -> list[CachedGeneration | None]:
        with self._lock:
            found = [self._data.get(k) for k in keys]
        hit = sum(1 for f in found if f is not None)
        self.hits += hit
        self.misses += len(keys) - hit
        return found

    def put_many(self, items: list[tuple[str, CachedGeneration]]) -> None:
        with self._lock:
            self._data.update(items)

    def __len__(self) -> int:
        return len(self._data)


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_json_schema"):  # a pydantic model class given as a schema
        return value.model_json_schema()
    return repr(value)


def canonical_json(value: Any) -> str:
    """A stable JSON text of ``value`` (keys sorted; tuples as lists; models as schemas)."""
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default
    )


def request_base_key(identity: dict[str, Any] | str, payload: dict[str, Any]) -> str:
    """Hash of a request without its generation index (see :func:`request_key`).

    ``identity`` may be given already as :func:`canonical_json` text, which a backend
    computes once rather than per request.
    """
    identity_text = identity if isinstance(identity, str) else canonical_json(identity)
    blob = identity_text + "\n" + canonical_json(payload)
    return hashlib.sha256(blob.encode()).hexdigest()


def request_key(base_key: str, index: int) -> str:
    """The key of the ``index``-th generation of a request."""
    return f"{base_key}:{index}"


def answered(
    base_key: str,
    texts: list[str | None],
    input_tokens: list[int | None],
    output_tokens: list[int | None],
    errors: list[Any],
    latency_s: float | None = None,
    retries: int = 0,
    reasonings: list[str | None] | None = None,
) -> list[tuple[str, CachedGeneration]]:
    """The cache entries of a request's answered generations (failed ones are not kept),
    with the request's latency and retries and each one's reasoning, so a row rebuilt from
    them is the row first made."""
    items: list[tuple[str, CachedGeneration]] = [
        (
            request_key(base_key, j),
            cached_generation(
                text, input_tokens[j], output_tokens[j], reasonings[j] if reasonings else None
            ),
        )
        for j, text in enumerate(texts)
        if errors[j] is None and text is not None
    ]
    if latency_s is not None:
        for _, item in items:
            item["latency_s"] = latency_s
            if retries:
                item["retries"] = retries
    return items


__all__ = [
    "CachedGeneration",
    "InMemoryRequestCache",
    "RequestCache",
    "answered",
    "cached_generation",
    "request_base_key",
    "request_key",
]
