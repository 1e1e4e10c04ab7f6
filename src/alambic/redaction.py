"""Keeping API keys out of every text alambic stores or logs.

A server's error reply may echo the request (a 401 that repeats the ``Authorization`` header
is common), and error texts end up in rows, the run store, parquet files, dataset cards and
logs. :func:`redact` removes from a text:

- every key alambic was configured with (each LLM registers its resolved ``api_key`` through
  :func:`register_secret`, whether it came from ``api_key=`` or an environment variable);
- the value of an ``Authorization``, ``x-api-key`` or ``api-key`` header or field;
- anything shaped like a bearer token or a provider key (``Bearer ...``, ``sk-...``).

Error entries of rows and the messages of the ``alambic`` logger go through it
(:class:`RedactingFilter` is installed on that logger when this module is imported).
"""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "[REDACTED]"
_MIN_SECRET_LENGTH = 6

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()

_PATTERNS = (
    # Authorization: Bearer xxx / "x-api-key": "xxx" / api_key=xxx
    re.compile(
        r"(?i)((?:proxy-)?authorization|x-api-key|x-goog-api-key|api[-_]?key)"
        r"(\s*[\"']?\s*[:=]\s*[\"']?\s*)(bearer\s+|basic\s+|token\s+)?((?!\[REDACTED\]|\.\.\.|(?:bearer|basic|token)\s)[^\s\"',;}\]]+)"
    ),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{6,})"),
    # provider key shapes: sk-..., sk-ant-..., gsk_..., hf_..., AIza...
    re.compile(r"()()()\b((?:sk|gsk|hf|pk|rk)[-_][A-Za-z0-9_-]{12,}|AIza[A-Za-z0-9_-]{20,})"),
)


def register_secret(value: str | None) -> None:
    """Remember ``value`` (an API key in use) so that :func:`redact` removes it anywhere."""
    global _secrets
    if not value or len(value) < _MIN_SECRET_LENGTH or value in _secrets:
        return
    with _lock:
        _secrets = _secrets | {value}


def _replace(match: re.Match[str]) -> str:
    groups = match.groups()
    if len(groups) == 2:  # the bearer pattern
        return f"{groups[0]}{REDACTED}"
    name, sep, scheme, _value = groups
    return f"{name or ''}{sep or ''}{scheme or ''}{REDACTED}"


def redact(text: str) -> str:
    """``text`` with every known key and key-shaped value replaced by ``[REDACTED]``."""
    if not text:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(_replace, text)
    return text


class RedactingFilter(logging.Filter):
    """Redacts the formatted message of every record it sees (see :func:`redact`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if redact(str(exc)) != str(exc):
                # the traceback would print the key: keep the record, drop the traceback
                record.msg = f"{record.msg} ({type(exc).__name__}: {redact(str(exc))})"
                record.exc_info = None
                record.exc_text = None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to ``logger`` (default: ``alambic``) and its handlers."""
    target = logger or logging.getLogger("alambic")
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())


install_log_filter()

__all__ = ["REDACTED", "RedactingFilter", "install_log_filter", "redact", "register_secret"]
