"""What every SDK-backed API client shares: the key, the base URL, one client per event loop,
and turning an SDK's exceptions into :class:`~alambic.errors.ErrorKind`.

A provider module subclasses :class:`ProviderLLM`, names its SDK, extra and key variable in
class variables, and implements ``_make_client`` and ``_agenerate``. Everything a provider
does not do (retries, concurrency, cache, token statistics, fan-out) lives in
:class:`~alambic.llms.base.AsyncLLM`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from types import ModuleType
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr, SecretStr

from alambic.errors import ErrorKind, MissingAPIKeyError
from alambic.llms.base import AsyncLLM
from alambic.llms.openai import classify_status, is_loopback_url
from alambic.llms.typing import GenerateOutput
from alambic.utils.imports import require

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


class ProviderLLM(AsyncLLM):
    """Base of the SDK-backed API clients: model, base URL, key, one client per event loop.

    The key comes from ``api_key`` or the environment variable the provider names; a server on
    this machine (a test server, a local proxy) needs none. ``load()`` checks both the SDK
    and the key, so a missing one is reported before any row is processed.
    """

    model: str = Field(description="Model name, as the provider knows it.")
    base_url: str | None = Field(default=None, description="Server URL; default: the vendor's.")
    api_key: SecretStr | None = Field(default=None, repr=False)

    sdk_module: ClassVar[str] = ""
    sdk_package: ClassVar[str | None] = None
    extra_name: ClassVar[str] = ""
    api_key_env_var: ClassVar[str | None] = None
    api_key_env_aliases: ClassVar[tuple[str, ...]] = ()
    """Other variables read for the key when ``api_key_env_var`` is unset (the SDK's own)."""
    base_url_env_var: ClassVar[str | None] = None
    default_base_url: ClassVar[str | None] = None
    requires_api_key: ClassVar[bool] = True

    _cache_exclude: ClassVar[frozenset[str]] = AsyncLLM._cache_exclude | {"api_key"}
    _clients: dict[int, Any] = PrivateAttr(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.model

    def prefetch_modules(self) -> tuple[str, ...]:
        return (self.sdk_module,)

    def sdk(self) -> ModuleType:
        """The provider's SDK, or the exact ``pip install "alambic[extra]"`` to run."""
        return require(
            self.sdk_module,
            feature=type(self).__name__,
            extra=self.extra_name,
            package=self.sdk_package,
        )

    def resolved_base_url(self) -> str | None:
        env = os.environ.get(self.base_url_env_var) if self.base_url_env_var else None
        return self.base_url or env or self.default_base_url

    def resolved_api_key(self) -> str | None:
        """The key to send; ``None`` where the provider needs none."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        names = ((self.api_key_env_var,) if self.api_key_env_var else ()) + self.api_key_env_aliases
        for name in names:
            env = os.environ.get(name)
            if env:
                return env
        if not self.requires_api_key:
            return None
        if is_loopback_url(self.resolved_base_url()):
            return "no-key-needed"
        where = f"set the {self.api_key_env_var} environment variable or pass api_key=..."
        raise MissingAPIKeyError(
            f"{type(self).__name__}(model={self.model!r}) has no API key: {where} "
            f"(server: {self.resolved_base_url() or 'the default endpoint'})."
        )

    def load(self) -> None:
        self.sdk()
        self.resolved_api_key()
        super().load()

    def unload(self) -> None:
        self._clients.clear()
        super().unload()

    def _make_client(self) -> Any:
        """Create the SDK's async client (retries off: the scheduler retries)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _make_client")

    def _client(self) -> Any:
        """The async client of the running event loop (an SDK client is bound to one loop)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client = self._make_client()
            self._clients[loop_id] = client
        return client

    async def aclose(self) -> None:
        client = self._clients.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            await close_client(client)

    def classify_error(self, error: BaseException) -> tuple[ErrorKind, float | None]:
        return classify_sdk_error(error)


async def close_client(client: Any) -> None:
    """Close an SDK client, whichever of ``aclose``/``close``/``__aexit__`` it offers."""
    for name in ("aclose", "close"):
        method = getattr(client, name, None)
        if method is not None:
            result = method()
            if inspect.isawaitable(result):
                await result
            return
    exit_ = getattr(client, "__aexit__", None)
    if exit_ is not None:
        await exit_(None, None, None)


def split_known_kwargs(
    method: Any, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``kwargs`` into those ``method`` declares and the rest.

    SDKs add and drop keyword arguments between versions (anthropic 2.x no longer declares
    ``temperature``); the rest can still be sent in the request body through ``extra_body``.
    """
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return dict(kwargs), {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(kwargs), {}
    known = {k: v for k, v in kwargs.items() if k in params}
    return known, {k: v for k, v in kwargs.items() if k not in params}


def openai_like_output(response: Any) -> GenerateOutput:
    """Texts and token counts from a chat-completion object of any OpenAI-shaped SDK
    (groq, mistralai, huggingface_hub, litellm): ``choices[].message.content`` and
    ``usage.prompt_tokens``/``completion_tokens`` (split evenly across choices)."""
    choices = sorted(response.choices or [], key=lambda c: getattr(c, "index", 0) or 0)
    texts: list[str | None] = []
    for choice in choices:
        content = getattr(choice.message, "content", None) if choice.message else None
        if isinstance(content, list):
            content = "".join(str(getattr(c, "text", "") or "") for c in content)
        texts.append(content)
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    n = len(texts)
    per_output: list[int | None] = [None] * n
    if completion is not None and n:
        per_output = [int(completion) // n] * n
    return {
        "generations": texts,
        "statistics": {
            "input_tokens": [int(prompt) if prompt is not None else None] * n,
            "output_tokens": per_output,
        },
    }


def openai_response_format(spec: dict[str, Any]) -> dict[str, Any]:
    """``response_format`` of type ``json_schema`` for a structured-output spec."""
    return {
        "type": "json_schema",
        "json_schema": {"name": str(spec.get("name") or "output"), "schema": json_schema_of(spec)},
    }


def drop_none(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def json_schema_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema inside a structured-output spec (a schema, or ``{"schema": ...}``
    holding a schema or a pydantic model class)."""
    schema: Any = spec.get("schema", spec) if "schema" in spec else spec
    if hasattr(schema, "model_json_schema"):
        schema = schema.model_json_schema()
    return dict(schema)


__all__ = [
    "ProviderLLM",
    "classify_sdk_error",
    "close_client",
    "drop_none",
    "json_schema_of",
    "openai_like_output",
    "openai_response_format",
    "split_known_kwargs",
    "status_and_headers",
]
