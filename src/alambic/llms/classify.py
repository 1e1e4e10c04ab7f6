"""Turning an HTTP status or an SDK's exception into an :class:`~alambic.errors.ErrorKind`
(and a ``Retry-After``), for every API client alike."""

from __future__ import annotations

import socket
from typing import Any

from alambic.errors import ErrorKind, LLMConfigurationError

_TIMEOUT_NAMES = frozenset(
    {"TimeoutException", "APITimeoutError", "InferenceTimeoutError", "ReadTimeout", "Timeout"}
)
_CONNECTION_NAMES = frozenset(
    {
        "TransportError",
        "NetworkError",
        "ConnectError",
        "RemoteProtocolError",
        "APIConnectionError",
        "ServerDisconnectedError",
        "ClientConnectionError",
        "ConnectionError",
    }
)
_REFUSED_NAMES = frozenset({"ConnectError", "ConnectionRefusedError", "ClientConnectorError"})


class InvalidResponseError(ValueError):
    """A reply that is not what the API promises (bad JSON, missing fields, no choices);
    classified ``invalid_response`` and retried."""


def retry_after_from_headers(headers: Any) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds) headers."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000
        value = headers.get("retry-after")
        if value is not None:
            return float(value)
    except (TypeError, ValueError, AttributeError):
        return None
    return None


def classify_status(
    status: int, message: str, headers: Any = None
) -> tuple[ErrorKind, float | None]:
    """Error kind for an HTTP status (shared by every HTTP client)."""
    retry_after = retry_after_from_headers(headers)
    if status == 429:
        return ErrorKind.RATE_LIMIT, retry_after
    if status in (401, 403):
        return ErrorKind.AUTHENTICATION, None
    if status == 404:
        return ErrorKind.NOT_FOUND, None
    if status in (400, 413, 422):
        lowered = message.lower()
        if "context" in lowered and ("length" in lowered or "window" in lowered):
            return ErrorKind.CONTEXT_LENGTH, None
        return ErrorKind.BAD_REQUEST, None
    if status in (408, 409) or status >= 500:
        return ErrorKind.SERVER, retry_after
    return ErrorKind.UNKNOWN, None


def status_and_headers(error: BaseException) -> tuple[int | None, Any]:
    """The HTTP status and response headers an SDK exception carries, wherever it keeps them.

    SDKs differ: ``status_code`` (openai, anthropic, groq, cohere, mistral, ollama),
    ``code`` (google-genai), ``response.status_code`` (huggingface_hub).
    """
    response = getattr(error, "response", None)
    if response is None:
        response = getattr(error, "raw_response", None)
    status = getattr(error, "status_code", None)
    if not isinstance(status, int) or status < 100:
        status = getattr(error, "code", None)
    if (not isinstance(status, int) or status < 100) and response is not None:
        status = getattr(response, "status_code", None)
    if not isinstance(status, int) or status < 100:
        status = None
    headers = getattr(error, "headers", None)
    if headers is None and response is not None:
        headers = getattr(response, "headers", None)
    return status, headers


def classify_sdk_error(error: BaseException) -> tuple[ErrorKind, float | None]:
    """Error kind and ``Retry-After`` for an exception from any provider SDK.

    An HTTP status wins (429 with its ``Retry-After``, 401, 5xx...); otherwise timeouts and
    dropped connections are recognised by their class names, which every httpx-based SDK
    shares (``httpx`` and ``httpx2``), so no SDK needs importing here.
    """
    if isinstance(error, InvalidResponseError):
        return ErrorKind.INVALID_RESPONSE, None
    status, headers = status_and_headers(error)
    if status is not None:
        return classify_status(status, str(error), headers)
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & _TIMEOUT_NAMES or isinstance(error, TimeoutError):
        return ErrorKind.TIMEOUT, None
    if names & _CONNECTION_NAMES or isinstance(error, ConnectionError):
        return ErrorKind.CONNECTION, None
    if (
        isinstance(error, (ValueError, KeyError, TypeError))
        and "response" in type(error).__name__.lower()
    ):
        return ErrorKind.INVALID_RESPONSE, None
    return ErrorKind.UNKNOWN, None


def never_connected(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says no connection could be opened at all
    (refused, no route, unknown host), as opposed to one that broke after opening."""
    cause: BaseException | None = error
    for _ in range(6):
        if cause is None:
            return False
        if isinstance(cause, (ConnectionRefusedError, socket.gaierror)):
            return True
        if {c.__name__ for c in type(cause).__mro__} & _REFUSED_NAMES:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def unusable_error(owner: str, kind: ErrorKind, error: BaseException) -> LLMConfigurationError:
    """The error that stops a step when no request of ``owner`` can succeed."""
    if kind is ErrorKind.AUTHENTICATION:
        setting, fix = "api_key", "check the key (api_key=... or its environment variable)"
    elif kind is ErrorKind.NOT_FOUND:
        setting, fix = "model", "check the model name and base_url"
    else:
        setting, fix = "base_url", "check that the server runs and base_url points at it"
    return LLMConfigurationError(
        f"{owner}: no request can succeed ({kind.value}: {error}). Fix {setting!r}: {fix}. "
        "The step was stopped before sending the remaining requests.",
        kind=kind,
        setting=setting,
    )


__all__ = [
    "InvalidResponseError",
    "classify_sdk_error",
    "classify_status",
    "never_connected",
    "retry_after_from_headers",
    "status_and_headers",
    "unusable_error",
]
