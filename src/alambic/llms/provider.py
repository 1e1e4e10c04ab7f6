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
import ipaddress
import os
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import urlparse

from pydantic import Field, PrivateAttr, SecretStr

from alambic.errors import (
    AlambicUserError,
    ErrorKind,
    LLMConfigurationError,
    MissingAPIKeyError,
)
from alambic.llms.base import AsyncLLM
from alambic.llms.classify import InvalidResponseError, classify_sdk_error, status_and_headers
from alambic.llms.scheduler import SchedulerLimits
from alambic.llms.typing import GenerateOutput
from alambic.redaction import register_secret
from alambic.utils.imports import require


def is_loopback_url(url: str | None) -> bool:
    """Whether ``url`` points at this machine (where servers usually need no key)."""
    if not url:
        return False
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, owner: str) -> None:
    """Raise a clear error when ``url`` is not an ``http(s)://host...`` URL."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https") and parsed.hostname and " " not in url:
        return
    raise AlambicUserError(
        f"{owner} has base_url={url!r}, which is not an http:// or https:// URL: pass the "
        "server's address, e.g. base_url='http://localhost:8000/v1'."
    )


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
    validates_base_url: ClassVar[bool] = True
    """Whether ``base_url`` must be an ``http(s)://`` URL (Ollama also takes ``host:port``)."""
    prebuilds_client: ClassVar[bool] = False
    """Whether ``load()`` creates the first client ahead (its imports then do not hold up the
    first request on the event loop)."""

    _cache_exclude: ClassVar[frozenset[str]] = AsyncLLM._cache_exclude | {"api_key"}
    _clients: dict[int, Any] = PrivateAttr(default_factory=dict)
    _spare: Any = PrivateAttr(default=None)

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
            key = self.api_key.get_secret_value()
            register_secret(key)
            return key
        names = ((self.api_key_env_var,) if self.api_key_env_var else ()) + self.api_key_env_aliases
        for name in names:
            env = os.environ.get(name)
            if env:
                register_secret(env)
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

    def _scheduler_limits(self) -> SchedulerLimits:
        limits = super()._scheduler_limits()
        limits.record_request_info = True  # rows keep latency_<step>, retries_<step>
        return limits

    def owner(self) -> str:
        """How errors name this LLM: ``OpenAILLM(model='gpt-4o')``."""
        return f"{type(self).__name__}(model={self.model!r})"

    def load(self) -> None:
        self.sdk()
        url = self.resolved_base_url()
        if url and self.validates_base_url:
            check_url(url, self.owner())
        self.resolved_api_key()
        super().load()
        if self.prebuilds_client and self._spare is None:
            self._spare = self._make_client()

    def unload(self) -> None:
        self._clients.clear()
        self._spare = None
        super().unload()

    def _make_client(self) -> Any:
        """Create the SDK's async client (retries off: the scheduler retries)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _make_client")

    def _client(self) -> Any:
        """The async client of the running event loop (an SDK client is bound to one loop)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client, self._spare = self._spare, None
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

    def unusable_error(self, kind: ErrorKind, error: BaseException) -> LLMConfigurationError:
        url = self.resolved_base_url() or "the provider's default endpoint"
        if kind is ErrorKind.AUTHENTICATION:
            setting = "api_key"
            where = f" or set {self.api_key_env_var}" if self.api_key_env_var else ""
            fix = f"the server at {url} refused the key: pass a valid api_key=...{where}"
        elif kind is ErrorKind.NOT_FOUND:
            setting = "model"
            fix = (
                f"the server at {url} knows no model {self.model!r} (or the URL's path is "
                "wrong): check model= and base_url="
            )
        else:
            setting = "base_url"
            env = f" (or {self.base_url_env_var})" if self.base_url_env_var else ""
            fix = f"nothing accepts connections at {url}: start the server or fix base_url={env}"
        return LLMConfigurationError(
            f"{self.owner()}: no request can succeed ({kind.value}: {error}). Fix {setting!r}: "
            f"{fix}. The step was stopped before sending the remaining requests.",
            kind=kind,
            setting=setting,
        )


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
    if not choices:
        raise InvalidResponseError(f"a chat completion with no choices: {str(response)[:200]!r}")
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
    "check_url",
    "classify_sdk_error",
    "close_client",
    "drop_none",
    "is_loopback_url",
    "json_schema_of",
    "openai_like_output",
    "openai_response_format",
    "split_known_kwargs",
    "status_and_headers",
]
