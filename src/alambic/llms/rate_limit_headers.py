"""Reading providers' rate-limit headers (OpenAI ``x-ratelimit-*``, Anthropic
``anthropic-ratelimit-*``) into :class:`RateLimitHeaders`."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds until a budget resets, from ``"20ms"``, ``"1.5s"``, ``"6m0s"``, a bare number of
    seconds, or an RFC 3339 timestamp (Anthropic); ``None`` when unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    now = time.time() if now_epoch is None else now_epoch
    return max(0.0, moment.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """The rate-limit state a provider reported with one reply."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def read_rate_limit_headers(headers: Mapping[str, str] | Any) -> RateLimitHeaders | None:
    """Rate-limit headers in OpenAI (``x-ratelimit-*``) or Anthropic
    (``anthropic-ratelimit-*``) style; ``None`` when the reply carries none."""
    get: Any
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):  # the HTTP library's headers: one pass over the names instead
        # of a scan of every header per name asked (this runs for every reply)
        found = {
            name.lower().decode("latin-1"): value.decode("latin-1")
            for name, value in raw
            if b"ratelimit" in name.lower()
        }
        if not found:
            return None
        get = found.get
    else:
        get = headers.get
    limit = get("x-ratelimit-limit-requests")
    if limit is not None or get("x-ratelimit-limit-tokens") is not None:
        return RateLimitHeaders(
            limit_requests=_int(limit),
            remaining_requests=_int(get("x-ratelimit-remaining-requests")),
            reset_requests_s=parse_reset(get("x-ratelimit-reset-requests")),
            limit_tokens=_int(get("x-ratelimit-limit-tokens")),
            remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
            reset_tokens_s=parse_reset(get("x-ratelimit-reset-tokens")),
        )
    limit = get("anthropic-ratelimit-requests-limit")
    if limit is not None or get("anthropic-ratelimit-tokens-limit") is not None:
        return RateLimitHeaders(
            limit_requests=_int(limit),
            remaining_requests=_int(get("anthropic-ratelimit-requests-remaining")),
            reset_requests_s=parse_reset(get("anthropic-ratelimit-requests-reset")),
            limit_tokens=_int(get("anthropic-ratelimit-tokens-limit")),
            remaining_tokens=_int(get("anthropic-ratelimit-tokens-remaining")),
            reset_tokens_s=parse_reset(get("anthropic-ratelimit-tokens-reset")),
        )
    return None


__all__ = ["RateLimitHeaders", "parse_reset", "read_rate_limit_headers"]
