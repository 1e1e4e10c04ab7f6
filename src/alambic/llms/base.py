"""The two LLM base classes, and the one path every request takes.

- :class:`LLM` is for engines that run in this process (transformers, vLLM, llama.cpp): a
  provider implements ``_generate`` (and ``_complete`` for raw prompts) on a batch of inputs.
- :class:`AsyncLLM` is for API clients: a provider implements ``_agenerate`` (and
  ``_acomplete``) for one request; the base adds the request scheduler (concurrency, retries,
  timeouts, the circuit breaker), the request cache, token statistics and the fan-out for
  servers that ignore ``n``.

Chat, raw completion (``complete``/``acomplete``), structured output and ``n`` all go through
the same chain: the request cache, then (API clients) the scheduler, then one attempt. Both
classes expose ``generate(inputs, num_generations=1, **generation_kwargs)`` and ``complete``,
which return one :class:`~alambic.llms.typing.GenerateOutput` per input and work from plain
code and from inside a running event loop alike.

What an executor uses, so it needs no ``isinstance`` check: ``set_request_cache``,
``concurrency_hint()``, ``answers_concurrently``, ``request_counters()`` and ``aclose()``.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    model_validator,
)

from alambic.errors import ErrorKind, LLMConfigurationError
from alambic.llms import request_path
from alambic.llms.cache import (
    CachedGeneration,
    RequestCache,
    canonical_json,
    request_base_key,
    request_key,
)
from alambic.llms.classify import unusable_error
from alambic.llms.outputs import (
    RAW_COMPLETION_UNSUPPORTED,
    engine_generation_kwargs,
    error_info,
    failed_output,
    from_cache,
    generate_structured,
    split_input,
    to_cache,
)
from alambic.llms.scheduler import (
    RequestScheduler,
    SchedulerCounters,
    SchedulerLimits,
)
from alambic.llms.structured import StructuredSpec
from alambic.llms.structured_requests import StructuredRequests
from alambic.llms.typing import ChatType, FormattedInput, GenerateOutput
from alambic.runtime_parameters import RuntimeParameter, RuntimeParameters
from alambic.utils.aio import run_sync
from alambic.utils.arguments import unknown_arguments
from alambic.utils.models import FastPrivateAttributes
from alambic.utils.serialization import dump_component

logger = logging.getLogger("alambic")


class LLM(StructuredRequests, FastPrivateAttributes, RuntimeParameters, BaseModel, ABC):
    """Base of every LLM: a model name, ``load``/``unload`` and ``generate``."""

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=True,
        extra="forbid",
        protected_namespaces=(),
        hide_input_in_errors=True,  # an invalid setting's error never echoes an api_key
    )

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_arguments(cls, data: Any) -> Any:
        """A misspelt setting is an error naming the closest real one (never ignored: it
        may be a limit or a key)."""
        if isinstance(data, dict):
            hints, known = unknown_arguments(data, cls.model_fields)
            if hints:
                raise ValueError(f"{cls.__name__} has no argument {', '.join(hints)}. {known}")
        return data

    generation_kwargs: RuntimeParameter[dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings sent with every request (temperature, max_new_tokens...).",
    )
    structured_output: dict[str, Any] | type[BaseModel] | None = Field(
        default=None,
        description="A JSON schema or pydantic model every reply must match (a row's own "
        "schema from format_input wins). See alambic.llms.structured.",
    )
    structured_output_retries: RuntimeParameter[int] = Field(
        default=2, ge=0, description="Re-asks of a reply that does not match its schema."
    )
    price_per_million_input: float | None = Field(
        default=None, ge=0, description="USD per million input tokens (overrides the table)."
    )
    price_per_million_output: float | None = Field(
        default=None, ge=0, description="USD per million output tokens (overrides the table)."
    )

    _cache_exclude: ClassVar[frozenset[str]] = frozenset(
        {
            "generation_kwargs",
            "structured_output_retries",
            "price_per_million_input",
            "price_per_million_output",
        }
    )
    """Fields that do not change an answer, left out of the request-cache key."""

    signature_exclude: ClassVar[frozenset[str]] = frozenset(
        {
            "api_key",
            "max_concurrency",
            "timeout",
            "max_retries",
            "rpm",
            "tpm",
            "batch_size",
            "device",
            "device_map",
            "tensor_parallel_size",
            "price_per_million_input",
            "price_per_million_output",
        }
    )
    """Settings that do not change results, left out of the pipeline's signature (the step
    contract's ``signature_exclude``; row data is never left out)."""

    _request_cache: RequestCache | None = PrivateAttr(default=None)
    _identity_cache: str | None = PrivateAttr(default=None)
    _loaded: bool = PrivateAttr(default=False)
    _spec_cache: tuple[Any, StructuredSpec] | None = PrivateAttr(default=None)

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model's name, written into every row this LLM generates."""

    def load(self) -> None:
        """Create clients or load weights. Idempotent."""
        self._loaded = True

    def prefetch_modules(self) -> tuple[str, ...]:
        """Modules ``load()`` will import that are cheap to import ahead (an API SDK, not a
        model). A pipeline imports them in a background thread while it opens its run store,
        so loading finds them ready."""
        return ()

    def unload(self) -> None:
        """Release what ``load`` created."""
        self._loaded = False

    def set_request_cache(self, cache: RequestCache | None) -> None:
        """Answer repeated requests from ``cache`` and store new answers in it."""
        self._request_cache = cache
        self._identity_cache = None  # settings may have changed since the last run

    def cache_identity(self) -> dict[str, Any]:
        """What identifies this backend in cache keys: class and settings, never secrets."""
        return dump_component(self, exclude=self._cache_exclude)

    def dump(self) -> dict[str, Any]:
        return dump_component(self)

    def merged_generation_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {**(self.generation_kwargs or {}), **overrides}

    def _identity_text(self) -> str:
        text = self._identity_cache
        if text is None:
            text = self._identity_cache = canonical_json(self.cache_identity())
        return text

    def _base_key(self, input: FormattedInput, kwargs: dict[str, Any], raw: bool = False) -> str:
        if raw:  # a raw prompt: its own key space, so it never answers a chat request
            payload: dict[str, Any] = {"prompt": input, "raw": True, "generation_kwargs": kwargs}
        else:
            messages, schema = split_input(input)
            payload = {"messages": messages, "schema": schema, "generation_kwargs": kwargs}
        return request_base_key(self._identity_text(), payload)

    # -- what an executor needs from any LLM -----------------------------------------------

    def concurrency_hint(self) -> int:
        """How many requests this LLM serves at once: an executor sizes its work to it.

        An engine in this process (this base) runs one batch at a time; API clients
        (:class:`AsyncLLM`) return their ``max_concurrency``."""
        return 1

    @property
    def answers_concurrently(self) -> bool:
        """Whether requests are awaited one per row (``agenerate``) rather than in batches."""
        return False

    def request_counters(self) -> SchedulerCounters | None:
        """What the request scheduler did (requests, retries, 429s...), where there is one."""
        return None

    async def aclose(self) -> None:
        """Close clients bound to the running event loop (an executor calls it when a run
        ends, on the loop the requests ran on). Engines in this process have none."""

    # -- synchronous engines ---------------------------------------------------------------

    def generate(
        self,
        inputs: Sequence[FormattedInput],
        num_generations: int = 1,
        **generation_kwargs: Any,
    ) -> list[GenerateOutput]:
        """Generate ``num_generations`` replies for each input."""
        kwargs = self.merged_generation_kwargs(generation_kwargs)
        specs = [self.structured_spec(i) for i in inputs]
        if any(spec is not None for spec in specs):
            return generate_structured(
                self.structured_request,
                lambda batch, n: self._generate_cached(batch, n, kwargs),
                list(inputs),
                specs,
                num_generations,
                self.structured_output_retries or 0,
            )
        return self._generate_cached(inputs, num_generations, kwargs)

    def _generate_cached(
        self,
        inputs: Sequence[Any],
        num_generations: int,
        kwargs: dict[str, Any],
        raw: bool = False,
    ) -> list[GenerateOutput]:
        """The cache, then ``_generate`` (or ``_complete`` for raw prompts) for the misses."""
        produce = self._complete if raw else self._generate
        cache = self._request_cache
        if cache is None:
            return produce(list(inputs), num_generations, **kwargs)
        base_keys = [self._base_key(i, kwargs, raw) for i in inputs]
        results: list[GenerateOutput | None] = []
        for base in base_keys:
            found = cache.get_many([request_key(base, j) for j in range(num_generations)])
            results.append(from_cache(found) if all(f is not None for f in found) else None)
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            fresh = produce([inputs[i] for i in todo], num_generations, **kwargs)
            items: list[tuple[str, CachedGeneration]] = []
            for i, out in zip(todo, fresh, strict=True):
                results[i] = out
                items.extend(to_cache(base_keys[i], out))
            if items:
                cache.put_many(items)
        return [r for r in results if r is not None]

    supports_raw_completion: ClassVar[bool] = False
    """Whether ``complete`` can send a raw prompt with no chat template (Magpie needs it)."""

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        """Continue raw text prompts, with no chat template applied; answers come from the
        request cache like ``generate``'s."""
        if not self.supports_raw_completion:
            raise NotImplementedError(RAW_COMPLETION_UNSUPPORTED.format(name=type(self).__name__))
        kwargs = self.merged_generation_kwargs(generation_kwargs)
        return self._generate_cached(list(prompts), num_generations, kwargs, raw=True)

    def _complete(
        self, prompts: list[str], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        """Engines with ``supports_raw_completion`` implement this (no cache, no merging)."""
        raise NotImplementedError(RAW_COMPLETION_UNSUPPORTED.format(name=type(self).__name__))

    def _generate(
        self, inputs: list[FormattedInput], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _generate")


class AsyncLLM(LLM):
    """Base of API clients: one request at a time in ``_agenerate``, the rest in the base."""

    max_concurrency: RuntimeParameter[PositiveInt] = Field(
        default=64, description="Most requests in flight at once for this LLM."
    )
    timeout: RuntimeParameter[float] = Field(
        default=120.0, gt=0, description="Seconds before one request attempt is abandoned."
    )
    max_retries: RuntimeParameter[int] = Field(
        default=6, ge=0, description="Retries of a request that failed with a retryable error."
    )
    rpm: RuntimeParameter[PositiveFloat | None] = Field(
        default=None,
        description="Requests per minute allowed (None: unlimited, or learned from the "
        "provider's rate-limit headers).",
    )
    tpm: RuntimeParameter[PositiveFloat | None] = Field(
        default=None,
        description="Tokens (input + output) per minute allowed (None: unlimited, or learned "
        "from the provider's rate-limit headers).",
    )

    supports_n: ClassVar[bool] = True
    """Whether the backend can return several generations from one request."""

    _cache_exclude: ClassVar[frozenset[str]] = frozenset(
        {
            "generation_kwargs",
            "max_concurrency",
            "timeout",
            "max_retries",
            "rpm",
            "tpm",
            "structured_output_retries",
            "price_per_million_input",
            "price_per_million_output",
        }
    )
    _scheduler: RequestScheduler | None = PrivateAttr(default=None)
    _n_ignored: bool = PrivateAttr(default=False)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # distilabel-style clients override the public agenerate: run it as _agenerate
        super().__init_subclass__(**kwargs)
        from alambic.llms._overrides import adopt_agenerate_override

        adopt_agenerate_override(cls, AsyncLLM)

    @property
    def scheduler(self) -> RequestScheduler:
        if self._scheduler is None:
            self._scheduler = RequestScheduler(
                self._scheduler_limits(), self.classify_error, self.unusable_error
            )
        return self._scheduler

    def _scheduler_limits(self) -> SchedulerLimits:
        return SchedulerLimits(
            max_concurrency=self.max_concurrency or 64,
            timeout=self.timeout or 120.0,
            max_retries=self.max_retries if self.max_retries is not None else 6,
            rpm=self.rpm,
            tpm=self.tpm,
        )

    def observe_rate_limit_headers(self, headers: Any) -> None:
        """Providers call this with each successful reply's HTTP headers, so budgets follow
        the provider's ``x-ratelimit-*`` / ``anthropic-ratelimit-*`` headers. (Headers of
        error replies are read by the scheduler from the exception itself.)"""
        self.scheduler.observe_headers(headers)

    def classify_error(self, error: BaseException) -> tuple[ErrorKind, float | None]:
        """Map a provider exception to an error kind and an optional ``Retry-After``."""
        return ErrorKind.UNKNOWN, None

    @abstractmethod
    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        """Send one request; may return fewer generations than asked (the base fans out)."""

    def concurrency_hint(self) -> int:
        return self.max_concurrency or 64

    @property
    def answers_concurrently(self) -> bool:
        return True

    def request_counters(self) -> SchedulerCounters | None:
        return self.scheduler.counters

    def unusable_error(self, kind: ErrorKind, error: BaseException) -> LLMConfigurationError:
        """The error that stops a step when no request can succeed (the scheduler's circuit
        breaker); providers name their own settings."""
        return unusable_error(f"{type(self).__name__}(model={self.model_name!r})", kind, error)

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **generation_kwargs: Any
    ) -> GenerateOutput:
        """Generate ``num_generations`` replies for one input; failures are kept, not raised."""
        kwargs = self.merged_generation_kwargs(generation_kwargs)
        return await self._arequest(input, num_generations, kwargs, raw=False)

    async def acomplete(
        self, prompt: str, num_generations: int = 1, **generation_kwargs: Any
    ) -> GenerateOutput:
        """Continue one raw prompt (no chat template); the same path as ``agenerate``:
        cache, scheduler, fan-out. Failures are kept, not raised."""
        if not self.supports_raw_completion:
            raise NotImplementedError(RAW_COMPLETION_UNSUPPORTED.format(name=type(self).__name__))
        kwargs = self.merged_generation_kwargs(generation_kwargs)
        return await self._arequest(prompt, num_generations, kwargs, raw=True)

    async def _acomplete(
        self, prompt: str, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        """Send one raw-completion request (providers with ``supports_raw_completion``)."""
        raise NotImplementedError(RAW_COMPLETION_UNSUPPORTED.format(name=type(self).__name__))

    async def _arequest(
        self, input: Any, num_generations: int, kwargs: dict[str, Any], raw: bool
    ) -> GenerateOutput:
        """The one request path (see :func:`alambic.llms.request_path.request`)."""
        return await request_path.request(self, input, num_generations, kwargs, raw)

    async def _one(
        self, input: Any, n: int, kwargs: dict[str, Any], raw: bool = False
    ) -> GenerateOutput:
        if raw or (self.structured_output is None and not isinstance(input, tuple)):
            return await self._send(input, n, kwargs, raw)
        spec = self.structured_spec(input)
        if spec is None:
            return await self._send(input, n, kwargs)
        return await self._one_structured(split_input(input)[0], spec, n, kwargs)

    async def _send(
        self, input: Any, n: int, kwargs: dict[str, Any], raw: bool = False
    ) -> GenerateOutput:
        """One request through the scheduler; a final failure becomes failed generations."""
        return await request_path.send(self, input, n, kwargs, raw)

    def _attempt(
        self, input: Any, n: int, kwargs: dict[str, Any], raw: bool = False
    ) -> Awaitable[GenerateOutput]:
        # No request leaves while an answer already received is still uncommitted: a crash
        # then never repeats more requests than were in flight (the cache batches its writes).
        commit = getattr(self._request_cache, "commit_pending", None)
        if commit is not None:
            commit()
        if raw:
            return self._acomplete(input, n, **kwargs)
        return self._agenerate(input, n, **kwargs)

    async def _one_structured(
        self, messages: ChatType, spec: StructuredSpec, n: int, kwargs: dict[str, Any]
    ) -> GenerateOutput:
        """Send, validate each reply, and re-ask the invalid ones a bounded number of times."""
        return await request_path.one_structured(self, messages, spec, n, kwargs)

    def generate(
        self,
        inputs: Sequence[FormattedInput],
        num_generations: int = 1,
        **generation_kwargs: Any,
    ) -> list[GenerateOutput]:
        """Synchronous batch generation; runs the requests concurrently under the scheduler."""
        return run_sync(
            self._amany(self.agenerate, list(inputs), num_generations, generation_kwargs)
        )

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        """Continue raw prompts concurrently under the scheduler (see :meth:`acomplete`)."""
        if not self.supports_raw_completion:
            raise NotImplementedError(RAW_COMPLETION_UNSUPPORTED.format(name=type(self).__name__))
        return run_sync(
            self._amany(self.acomplete, list(prompts), num_generations, generation_kwargs)
        )

    async def _amany(
        self,
        one: Callable[..., Awaitable[GenerateOutput]],
        inputs: list[Any],
        num_generations: int,
        kwargs: dict[str, Any],
    ) -> list[GenerateOutput]:
        try:
            return list(await asyncio.gather(*(one(i, num_generations, **kwargs) for i in inputs)))
        finally:
            await self.aclose()


__all__ = [
    "LLM",
    "AsyncLLM",
    "engine_generation_kwargs",
    "error_info",
    "failed_output",
    "split_input",
]
