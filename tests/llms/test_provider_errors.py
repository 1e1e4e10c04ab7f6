"""classify_sdk_error on the real exception classes of each SDK."""

from __future__ import annotations

import httpx
import pytest

from alambic.errors import ErrorKind
from alambic.llms.provider import classify_sdk_error, status_and_headers


def test_cohere_api_error_with_retry_after():
    from cohere.core.api_error import ApiError

    error = ApiError(status_code=429, headers={"retry-after": "2"}, body={"message": "slow"})
    assert classify_sdk_error(error) == (ErrorKind.RATE_LIMIT, 2.0)
    assert classify_sdk_error(ApiError(status_code=401, body={})) == (
        ErrorKind.AUTHENTICATION,
        None,
    )


def test_ollama_response_error():
    from ollama import ResponseError

    assert classify_sdk_error(ResponseError("busy", 503)) == (ErrorKind.SERVER, None)
    assert classify_sdk_error(ResponseError("no such model", 404)) == (ErrorKind.NOT_FOUND, None)


def test_google_genai_api_error():
    from google.genai import errors

    error = errors.ClientError(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}})
    assert classify_sdk_error(error) == (ErrorKind.RATE_LIMIT, None)
    bad = errors.ClientError(
        400, {"error": {"code": 400, "message": "context window exceeded, length"}}
    )
    assert classify_sdk_error(bad)[0] is ErrorKind.CONTEXT_LENGTH


def test_anthropic_status_error_reads_response_headers():
    import anthropic

    request = httpx.Request("POST", "http://127.0.0.1/v1/messages")
    response = httpx.Response(429, headers={"retry-after": "3"}, request=request)
    error = anthropic.RateLimitError("slow down", response=response, body=None)
    assert status_and_headers(error)[0] == 429
    assert classify_sdk_error(error) == (ErrorKind.RATE_LIMIT, 3.0)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (httpx.ReadTimeout("slow"), ErrorKind.TIMEOUT),
        (httpx.ConnectError("refused"), ErrorKind.CONNECTION),
        (TimeoutError(), ErrorKind.TIMEOUT),
        (ConnectionResetError(), ErrorKind.CONNECTION),
        (KeyError("x"), ErrorKind.UNKNOWN),
    ],
)
def test_transport_errors_by_class(error, kind):
    assert classify_sdk_error(error) == (kind, None)
