"""OpenAI's chat-completions API, and every server that speaks it (vLLM serve, TGI,
llama.cpp server, Ollama, Together, Groq...): set ``base_url`` and, where needed, ``api_key``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr

from alambic.errors import ErrorKind
from alambic.llms._content import reasoning_of, with_reasonings
from alambic.llms._http import lean_http_client, sdk_http_module
from alambic.llms.base import split_input
from alambic.llms.batch.llm import BatchAPILLM
from alambic.llms.classify import (
    InvalidResponseError,
    classify_status,
    never_connected,
    retry_after_from_headers,
)
from alambic.llms.provider import is_loopback_url
from alambic.llms.structured import StructuredSpec
from alambic.llms.typing import FormattedInput, GenerateOutput

logger = logging.getLogger("alambic")

if TYPE_CHECKING:
    from openai import AsyncOpenAI

_RENAMED_KWARGS = {"max_new_tokens": "max_tokens"}


_KEY_PREFIX = f"alambic-{uuid.uuid4().hex}-"
_KEY_NUMBERS = itertools.count()
"""Idempotency keys of chat requests: unique in this process and across processes."""


@functools.cache
def sdk_response_type() -> Any:
    """The SDK's raw HTTP response class: passed as ``cast_to`` it returns the body unparsed."""
    return sdk_http_module().Response


def sdk_http_client_kwargs(
    openai: Any, timeout: float, base_url: str = "", *, lean: bool = True
) -> dict[str, Any]:
    """``http_client=`` for the openai SDK: the lean HTTP/1.1 transport for ``http://``
    servers (see ``alambic.llms._http``), else the SDK's aiohttp transport when aiohttp is
    installed.

    Measured against the local test server (64 in flight, 2-core machine): 584 requests/s with
    the SDK's default httpx transport, 973-1,309 with aiohttp, 1,702 with the lean transport.
    Errors are the SDK's own in every case, so classification does not change.
    """
    if lean and base_url.startswith("http://"):
        return {"http_client": lean_http_client(timeout)}
    if importlib.util.find_spec("aiohttp") is None or not hasattr(openai, "DefaultAioHttpClient"):
        return {}
    try:
        return {"http_client": openai.DefaultAioHttpClient(timeout=timeout)}
    except RuntimeError:  # the SDK was installed without its aiohttp support
        return {}


def _known_platform(client: Any) -> None:
    """Tell a new SDK client which platform this is, as its first request would otherwise
    find out in a worker thread (the SDK keeps the answer on the client, ``_platform``).

    That thread's start is part of the first request, which goes out alone for a short
    grace of idle time: waiting on a thread reads as idle, and on a loaded machine the hop
    outlasted the grace, so the requests held behind a refused first one went to the closed
    port too (65 instead of 3 in a test run under load). The SDK's own function finds it here
    (cached by the standard library after the first call). Should the SDK change, nothing is
    set and its first request finds it as before."""
    if getattr(client, "_platform", False) is not None:
        return
    try:
        from openai._base_client import get_platform
    except ImportError:
        return
    client._platform = get_platform()


class OpenAILLM(BatchAPILLM):
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
    lean_http: bool = Field(
        default=True,
        description="Use alambic's lean HTTP/1.1 transport for http:// servers (faster on "
        "local servers); False uses the SDK's own transport.",
    )
    batch_max_requests: int = Field(
        default=50_000, gt=0, le=50_000, description="Most requests in one batch job."
    )

    sdk_module: ClassVar[str] = "openai"
    extra_name: ClassVar[str] = "openai"
    api_key_env_var: ClassVar[str | None] = "OPENAI_API_KEY"
    base_url_env_var: ClassVar[str | None] = "OPENAI_BASE_URL"
    default_base_url: ClassVar[str | None] = "https://api.openai.com/v1"
    prebuilds_client: ClassVar[bool] = True

    _cache_exclude: ClassVar[frozenset[str]] = BatchAPILLM._cache_exclude | {"lean_http"}
    _schema_as_json_object: bool = False
    _chat_route: tuple[str, dict[str, Any], Any] | None = None

    batch_endpoint: ClassVar[str] = "/v1/chat/completions"
    """The ``url`` of a batch line and the job's ``endpoint``, as this API names them."""
    batch_max_bytes: ClassVar[int | None] = 190 * 2**20  # the input file's limit: 200 MB

    def batch_journal_endpoint(self) -> str:
        return self.resolved_base_url()

    def _new_batcher(self, journal: Any, limits: dict[str, Any]) -> Any:
        from alambic.llms.batch.openai import OpenAIBatcher

        return OpenAIBatcher(
            self._make_batch_client(), journal, endpoint=self.batch_endpoint, **limits
        )

    def _make_batch_client(self) -> Any:
        """The SDK's client with its own HTTP stack (file uploads need its multipart code)."""
        return self.sdk().AsyncOpenAI(
            api_key=self.resolved_api_key(),
            base_url=self.resolved_base_url(),
            max_retries=2,
            timeout=self.timeout or 120.0,
        )

    def load(self) -> None:
        super().load()
        if self._spare is not None:
            # The chat route, and with it the SDK's description of this machine, decided
            # while loading (see _known_platform).
            self._route_chat(self._spare)

    def resolved_base_url(self) -> str:
        return super().resolved_base_url() or ""

    def _make_client(self) -> Any:
        """Create the SDK's async client (retries off: the scheduler retries)."""
        openai = self.sdk()
        timeout = self.timeout or 120.0
        client = openai.AsyncOpenAI(
            api_key=self.resolved_api_key(),
            base_url=self.resolved_base_url(),
            max_retries=0,
            timeout=timeout,
            **sdk_http_client_kwargs(
                openai, timeout, self.resolved_base_url(), lean=self.lean_http
            ),
        )
        _known_platform(client)
        return client

    def _client(self) -> AsyncOpenAI:
        client: AsyncOpenAI = super()._client()
        return client

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
        if self.use_batch_api:
            reply = await self._batcher().submit(body)
            return parse_chat_completion(json.dumps(reply).encode(), num_generations)
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
        # Options given explicitly are the client's own values: each one left out costs a
        # deep copy of its default sentinel per request (measured: 45% of building the options)
        # and the idempotency key (else a uuid4, an os.urandom call, per request) is as unique.
        # ``post_parser`` is the SDK's own "none" sentinel, as its resource methods pass it:
        # left out, it was deep-copied per request (~9 us of the ~550 a W7 request costs).
        client = self._client()
        path, headers, not_given = self._chat_route or self._route_chat(client)
        options: Any = {  # ``post_parser`` is not in the SDK's typed ``RequestOptions``
            "headers": headers,
            "max_retries": 0,
            "timeout": client.timeout,
            "idempotency_key": f"{_KEY_PREFIX}{next(_KEY_NUMBERS)}",
            "post_parser": not_given,
        }
        return await client.post(path, body=body, cast_to=sdk_response_type(), options=options)

    def _route_chat(self, client: Any) -> tuple[str, dict[str, Any], Any]:
        """Where a chat request goes, the headers it adds to (or, ``Omit``, removes from)
        the client's, and the SDK's "not given" sentinel; decided once, as every client of an
        LLM has its class and base URL.

        - The path: for the SDK's own client, the absolute URL (``post`` then skips joining
          the base URL and the path: a URL parse and copy, ~30 us a request). Its subclasses
          (Azure's) rewrite relative paths, so they get the path.
        - The headers: through the lean transport (a plain-HTTP server: vLLM, SGLang,
          llama.cpp, TGI, Ollama), the SDK's description of this machine is left out, its
          seven ``X-Stainless-*`` platform headers (OS, architecture, runtime, versions). No
          such server reads them, and building, copying and sending them cost 5-10% of the
          client's CPU per request (W7). The per-request ones (retry count, read timeout)
          stay; APIs over ``https://`` get every header."""
        sdk = self.sdk()
        plain = type(client) is sdk.AsyncOpenAI
        path = f"{client.base_url}chat/completions" if plain else "/chat/completions"
        headers: dict[str, Any] = {}
        if self.lean_http and self.resolved_base_url().startswith("http://"):
            omit = sdk.Omit()
            headers = {
                name: omit
                for name in client.default_headers
                if name.lower().startswith("x-stainless-")
            }
        self._chat_route = (path, headers, sdk.NOT_GIVEN)
        return self._chat_route

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        """OpenAI-compatible servers take ``response_format`` json_schema (vLLM and
        llama.cpp server too); replies are validated anyway, and a server that ignores it gets
        the schema in the prompt on the re-ask."""
        return True

    # -- raw completions (legacy /v1/completions) -------------------------------------------

    supports_raw_completion: ClassVar[bool] = True

    async def _acomplete(
        self, prompt: str, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        kwargs = self.request_kwargs(generation_kwargs)
        if num_generations > 1:
            kwargs["n"] = num_generations
        raw = await self._client().completions.with_raw_response.create(
            model=self.model, prompt=prompt, **kwargs
        )
        return parse_text_completion(raw.http_response.content, num_generations)


def parse_text_completion(body: bytes, num_generations: int) -> GenerateOutput:
    """Read texts and token counts from a legacy ``/v1/completions`` JSON body."""
    try:
        data = json.loads(body)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        texts: list[str | None] = [c.get("text") for c in choices][: max(num_generations, 1)]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidResponseError(f"not a text completion: {body[:200]!r}") from exc
    if not texts:
        raise InvalidResponseError(f"a text completion with no choices: {body[:200]!r}")
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


def parse_chat_completion(body: bytes, num_generations: int) -> GenerateOutput:
    """Read texts and token counts from a chat-completion JSON body."""
    try:
        data = json.loads(body)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        texts: list[str | None] = [(c.get("message") or {}).get("content") for c in choices]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidResponseError(f"not a chat completion: {body[:200]!r}") from exc
    if not texts:
        raise InvalidResponseError(f"a chat completion with no choices: {body[:200]!r}")
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
    details = usage.get("prompt_tokens_details")
    if details and details.get("cached_tokens"):  # part of the prompt billed at the cache rate
        out["statistics"]["cached_tokens"] = [details["cached_tokens"]] * n
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
        refused = _dropped(error) or never_connected(error)
        return (ErrorKind.CONNECTION if refused else ErrorKind.TIMEOUT), None
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


__all__ = [
    "OpenAILLM",
    "classify_openai_error",
    "classify_status",
    "is_loopback_url",
    "retry_after_from_headers",
]
