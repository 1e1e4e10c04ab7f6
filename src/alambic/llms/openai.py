"""OpenAI's chat-completions API, and every server that speaks it (vLLM serve, TGI,
llama.cpp server, Ollama, Together, Groq...): set ``base_url`` and, where needed, ``api_key``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import importlib.util
import ipaddress
import json
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

from pydantic import Field, PrivateAttr, SecretStr

from alambic.errors import ErrorKind, LLMRequestError, MissingAPIKeyError
from alambic.llms._content import reasoning_of, with_reasonings
from alambic.llms.base import AsyncLLM, failed_output, split_input
from alambic.llms.structured import StructuredSpec
from alambic.llms.typing import FormattedInput, GenerateOutput
from alambic.utils.aio import run_sync
from alambic.utils.imports import require

logger = logging.getLogger("alambic")

if TYPE_CHECKING:
    from openai import AsyncOpenAI

_RENAMED_KWARGS = {"max_new_tokens": "max_tokens"}


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
    except (TypeError, ValueError):
        return None
    return None


def _sdk_http_module() -> Any:
    """The HTTP library the installed SDK is built on (``httpx2`` in openai 3, ``httpx`` before)."""
    base = importlib.import_module("openai._base_client")
    return getattr(base, "httpx2", None) or base.httpx


@functools.cache
def sdk_response_type() -> Any:
    """The SDK's raw HTTP response class: passed as ``cast_to`` it returns the body unparsed."""
    return _sdk_http_module().Response


def sdk_http_client_kwargs(openai: Any, timeout: float, base_url: str = "") -> dict[str, Any]:
    """``http_client=`` for the openai SDK: the lean HTTP/1.1 client for ``http://`` servers
    (see ``alambic.llms._http``), else the SDK's aiohttp transport when aiohttp is installed.

    Measured against the local test server (64 in flight, 2-core machine): 584 requests/s with
    the SDK's default httpx transport, 973-1,309 with aiohttp, 1,702 with the lean client.
    Errors are the SDK's own in every case, so classification does not change.
    """
    if base_url.startswith("http://"):
        from alambic.llms._http import lean_client_class

        # every request of this client goes to the plain-HTTP server: no TLS context is needed,
        # and not loading the CA bundle saves ~20 ms before the first request
        client = lean_client_class(_sdk_http_module())(timeout=timeout, verify=False)
        return {"http_client": client}
    if importlib.util.find_spec("aiohttp") is None or not hasattr(openai, "DefaultAioHttpClient"):
        return {}
    try:
        return {"http_client": openai.DefaultAioHttpClient(timeout=timeout)}
    except RuntimeError:  # the SDK was installed without its aiohttp support
        return {}


class OpenAILLM(AsyncLLM):
    """A chat model served through the OpenAI API or any OpenAI-compatible server.

    The key comes from ``api_key`` or the ``OPENAI_API_KEY`` variable (a server on this
    machine needs none). Several generations use ``n`` in one request; for servers that
    silently ignore ``n`` the rest are asked one request each.
    """

    model: str = Field(description="Model name, as the server knows it.")
    base_url: str | None = Field(
        default=None, description="Server URL; default OPENAI_BASE_URL or OpenAI's API."
    )
    api_key: SecretStr | None = Field(default=None, exclude=False, repr=False)

    api_key_env_var: ClassVar[str] = "OPENAI_API_KEY"
    base_url_env_var: ClassVar[str] = "OPENAI_BASE_URL"
    default_base_url: ClassVar[str] = "https://api.openai.com/v1"
    extra_name: ClassVar[str] = "openai"

    _cache_exclude: ClassVar[frozenset[str]] = AsyncLLM._cache_exclude | {"api_key"}
    _clients: dict[int, Any] = PrivateAttr(default_factory=dict)
    _spare: Any = PrivateAttr(default=None)
    _schema_as_json_object: bool = PrivateAttr(default=False)

    @property
    def model_name(self) -> str:
        return self.model

    def resolved_base_url(self) -> str:
        return self.base_url or os.environ.get(self.base_url_env_var) or self.default_base_url

    def resolved_api_key(self) -> str:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        env = os.environ.get(self.api_key_env_var)
        if env:
            return env
        if is_loopback_url(self.resolved_base_url()):
            return "no-key-needed"
        raise MissingAPIKeyError(
            f"{type(self).__name__}(model={self.model!r}) has no API key: set the "
            f"{self.api_key_env_var} environment variable or pass api_key=... "
            f"(server: {self.resolved_base_url()})."
        )

    def prefetch_modules(self) -> tuple[str, ...]:
        return ("openai",)

    def load(self) -> None:
        require("openai", feature=type(self).__name__, extra=self.extra_name)
        self.resolved_api_key()
        super().load()
        # Made here rather than on the first request: creating the client imports the HTTP
        # stack, which would otherwise hold up the first request (and everything queued
        # behind it) on the event loop. It binds to a loop only when its first connection opens.
        self._spare = self._make_client()

    def _make_client(self) -> Any:
        """Create the SDK's async client (retries off: the scheduler retries)."""
        openai = require("openai", feature=type(self).__name__, extra=self.extra_name)
        timeout = self.timeout or 120.0
        return openai.AsyncOpenAI(
            api_key=self.resolved_api_key(),
            base_url=self.resolved_base_url(),
            max_retries=0,
            timeout=timeout,
            **sdk_http_client_kwargs(openai, timeout, self.resolved_base_url()),
        )

    def _client(self) -> AsyncOpenAI:
        """The async client of the running event loop (an SDK client is bound to one loop)."""
        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            client, self._spare = self._spare, None
            if client is None:
                client = self._make_client()
            self._clients[loop_id] = client
        typed: AsyncOpenAI = client
        return typed

    async def aclose(self) -> None:
        client = self._clients.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            await client.close()

    def unload(self) -> None:
        self._clients.clear()
        self._spare = None
        super().unload()

    def classify_error(self, error: BaseException) -> tuple[ErrorKind, float | None]:
        return classify_openai_error(error)

    def request_kwargs(self, generation_kwargs: dict[str, Any]) -> dict[str, Any]:
        """Generation settings in the API's names (``max_new_tokens`` -> ``max_tokens``)."""
        return {_RENAMED_KWARGS.get(k, k): v for k, v in generation_kwargs.items() if v is not None}

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        messages, schema = split_input(input)
        kwargs = self.request_kwargs(generation_kwargs)
        ours = schema is not None and "response_format" not in kwargs
        if schema is not None and ours:
            kwargs["response_format"] = _response_format(schema, self._schema_as_json_object)
        if num_generations > 1:
            kwargs["n"] = num_generations
        body = {"model": self.model, "messages": messages, **kwargs}
        try:
            response = await self._post_chat(body)
        except Exception as exc:
            if not (ours and not self._schema_as_json_object and _rejects_json_schema(exc)):
                raise
            # llama-cpp-python's server (and other compatible servers) take a schema only
            # as {"type": "json_object", "schema": ...}: switch once, for good, and resend.
            assert schema is not None
            self._schema_as_json_object = True
            logger.info(
                "%s: %s rejects response_format json_schema; sending schemas as "
                '{"type": "json_object", "schema": ...} from now on.',
                type(self).__name__,
                self.resolved_base_url(),
            )
            body["response_format"] = _response_format(schema, True)
            response = await self._post_chat(body)
        self.scheduler.observe_headers(response.headers)
        return parse_chat_completion(response.content, num_generations)

    async def _post_chat(self, body: dict[str, Any]) -> Any:
        # The SDK's documented low-level `post` skips its per-call parameter transformation
        # (about a third of its CPU per request here); auth, headers, errors stay the SDK's.
        return await self._client().post(
            "/chat/completions", body=body, cast_to=sdk_response_type()
        )

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        """OpenAI-compatible servers take ``response_format`` json_schema (vLLM and
        llama.cpp server too); replies are validated anyway, and a server that ignores it gets
        the schema in the prompt on the re-ask."""
        return True

    # -- raw completions (legacy /v1/completions) -------------------------------------------

    supports_raw_completion: ClassVar[bool] = True

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        """Continue raw prompts through the legacy ``/v1/completions`` endpoint: no chat
        template is applied (Magpie needs this). vLLM serve, llama.cpp server, TGI and
        ``transformers serve`` have that endpoint; OpenAI itself only for a few models."""
        return run_sync(self._acomplete_many(list(prompts), num_generations, generation_kwargs))

    async def _acomplete_many(
        self, prompts: list[str], num_generations: int, kwargs: dict[str, Any]
    ) -> list[GenerateOutput]:
        try:
            return list(
                await asyncio.gather(
                    *(self.acomplete(p, num_generations, **kwargs) for p in prompts)
                )
            )
        finally:
            await self.aclose()

    async def acomplete(
        self, prompt: str, num_generations: int = 1, **generation_kwargs: Any
    ) -> GenerateOutput:
        """Continue one raw prompt under the scheduler; failures are kept, not raised."""
        kwargs = self.request_kwargs(self.merged_generation_kwargs(generation_kwargs))
        out = await self._complete_once(prompt, num_generations, kwargs)
        missing = num_generations - len(out["generations"])
        if missing > 0:  # the server ignored n: ask for the rest one request each
            rest = await asyncio.gather(
                *(self._complete_once(prompt, 1, kwargs) for _ in range(missing))
            )
            for extra in rest:
                out["generations"].extend(extra["generations"])
                out["statistics"]["input_tokens"].extend(extra["statistics"]["input_tokens"])
                out["statistics"]["output_tokens"].extend(extra["statistics"]["output_tokens"])
                if "errors" in extra or "errors" in out:
                    out.setdefault("errors", [None] * (len(out["generations"]) - 1))
                    out["errors"].extend(extra.get("errors") or [None])
        return out

    async def _complete_once(self, prompt: str, n: int, kwargs: dict[str, Any]) -> GenerateOutput:
        async def attempt() -> GenerateOutput:
            raw = await self._client().completions.with_raw_response.create(
                model=self.model, prompt=prompt, **({**kwargs, "n": n} if n > 1 else kwargs)
            )
            return parse_text_completion(raw.http_response.content, n)

        try:
            out = await self.scheduler.run(attempt)
        except LLMRequestError as exc:
            return failed_output(n, exc)
        stats = out["statistics"]
        for i, o in zip(stats["input_tokens"], stats["output_tokens"], strict=False):
            self.scheduler.record_tokens(i, o)
        return out


def parse_text_completion(body: bytes, num_generations: int) -> GenerateOutput:
    """Read texts and token counts from a legacy ``/v1/completions`` JSON body."""
    try:
        data = json.loads(body)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        texts: list[str | None] = [c.get("text") for c in choices][: max(num_generations, 1)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidResponseError(f"not a text completion: {body[:200]!r}") from exc
    usage = data.get("usage") or {}
    completion = usage.get("completion_tokens")
    n = len(texts)
    return {
        "generations": texts,
        "statistics": {
            "input_tokens": [usage.get("prompt_tokens")] * n,
            "output_tokens": [completion // n if completion is not None and n else None] * n,
        },
    }


def _response_format(schema: dict[str, Any], as_json_object: bool = False) -> dict[str, Any]:
    """OpenAI's ``json_schema`` form, or the ``json_object`` + ``schema`` form that
    llama-cpp-python's server takes instead."""
    json_schema = schema.get("schema", schema)
    if hasattr(json_schema, "model_json_schema"):
        json_schema = json_schema.model_json_schema()
    if as_json_object:
        return {"type": "json_object", "schema": json_schema}
    return {
        "type": "json_schema",
        "json_schema": {"name": schema.get("name", "output"), "schema": json_schema},
    }


def _rejects_json_schema(error: BaseException) -> bool:
    """Whether a server refused the request because it does not know the ``json_schema``
    response format (llama-cpp-python's server answers 500 with its validation error)."""
    status = getattr(error, "status_code", None)
    if status not in (400, 422, 500):
        return False
    text = str(error)
    response = getattr(error, "response", None)
    if response is not None:
        with contextlib.suppress(Exception):
            text += response.text
    return "response_format" in text and "json_schema" in text


class InvalidResponseError(ValueError):
    """A reply that is not a chat completion (bad JSON, missing fields)."""


def parse_chat_completion(body: bytes, num_generations: int) -> GenerateOutput:
    """Read texts and token counts from a chat-completion JSON body."""
    try:
        data = json.loads(body)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        texts: list[str | None] = [(c.get("message") or {}).get("content") for c in choices]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidResponseError(f"not a chat completion: {body[:200]!r}") from exc
    usage = data.get("usage") or {}
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    n = len(texts)
    per_output: list[int | None] = [completion] if n == 1 else [None] * n
    if n > 1 and completion is not None:
        per_output = [completion // n] * n
    out: GenerateOutput = {
        "generations": texts[: max(num_generations, 1)],
        "statistics": {"input_tokens": [prompt] * n, "output_tokens": per_output},
    }
    reasonings = [reasoning_of(c.get("message")) for c in choices]
    return with_reasonings(out, reasonings[: max(num_generations, 1)])


def classify_openai_error(error: BaseException) -> tuple[ErrorKind, float | None]:
    """Error kinds for the ``openai`` SDK's exceptions (also used by compatible SDKs)."""
    if isinstance(error, InvalidResponseError):
        return ErrorKind.INVALID_RESPONSE, None
    try:
        import openai
    except ImportError:  # pragma: no cover - the client could not exist without it
        return ErrorKind.UNKNOWN, None
    if isinstance(error, openai.APITimeoutError):
        # the aiohttp transport reports a dropped connection as a (connect) timeout
        return (ErrorKind.CONNECTION if _dropped(error) else ErrorKind.TIMEOUT), None
    if isinstance(error, openai.APIConnectionError):
        return ErrorKind.CONNECTION, None
    if isinstance(error, openai.APIResponseValidationError):
        return ErrorKind.INVALID_RESPONSE, None
    if isinstance(error, openai.APIStatusError):
        return classify_status(error.status_code, str(error), error.response.headers)
    if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
        return ErrorKind.INVALID_RESPONSE, None
    return ErrorKind.UNKNOWN, None


def _dropped(error: BaseException) -> bool:
    cause: BaseException | None = error
    for _ in range(4):
        if cause is None:
            return False
        if type(cause).__name__ in ("ServerDisconnectedError", "ClientConnectionResetError"):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


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


__all__ = ["OpenAILLM", "classify_openai_error", "classify_status", "is_loopback_url"]
