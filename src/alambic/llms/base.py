"""The two LLM base classes.

- :class:`LLM` is for engines that run in this process (transformers, vLLM, llama.cpp): a
  provider implements ``_generate`` on a batch of inputs.
- :class:`AsyncLLM` is for API clients: a provider implements ``_agenerate`` for one request;
  the base adds the request scheduler (concurrency, retries, timeouts), the request cache,
  token statistics and the fan-out for servers that ignore ``n``.

Both expose ``generate(inputs, num_generations=1, **generation_kwargs)``, which returns one
:class:`~alambic.llms.typing.GenerateOutput` per input and works from plain code and from inside
a running event loop alike.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, PrivateAttr

from alambic.errors import ErrorKind, LLMRequestError
from alambic.llms.cache import (
    CachedGeneration,
    RequestCache,
    canonical_json,
    request_base_key,
    request_key,
)
from alambic.llms.scheduler import RequestScheduler, SchedulerLimits, estimate_tokens
from alambic.llms.structured import (
    StructuredSpec,
    resolve_spec,
    validate_reply,
    with_instructions,
)
from alambic.llms.typing import (
    ChatType,
    FormattedInput,
    GenerateOutput,
    GenerationError,
    StructuredOutputSpec,
)
from alambic.runtime_parameters import (
    RuntimeParameter,
    runtime_parameter_names,
    set_runtime_parameters,
)
from alambic.utils.aio import run_sync
from alambic.utils.serialization import dump_component

logger = logging.getLogger("alambic")


def split_input(input: FormattedInput) -> tuple[ChatType, StructuredOutputSpec | None]:
    """Separate the conversation from its optional structured-output schema."""
    if isinstance(input, tuple):
        return input[0], input[1]
    return input, None


def engine_generation_kwargs(
    generation_kwargs: dict[str, Any],
    *,
    engine: str,
    renamed: dict[str, str],
    allowed: set[str],
) -> dict[str, Any]:
    """A local engine's sampling arguments from alambic's generation settings.

    Settings are renamed to the engine's names (``max_new_tokens`` -> ``max_tokens``, ...),
    ``None`` values dropped, ``do_sample=False`` becomes greedy (``temperature=0``), a single
    ``stop`` string a list, and ``max_tokens`` defaults to 128. A setting the engine does not
    know is an error listing the known ones, rather than a silently ignored value.
    """
    kwargs = {renamed.get(k, k): v for k, v in generation_kwargs.items() if v is not None}
    if kwargs.pop("do_sample", True) is False:
        kwargs["temperature"] = 0.0
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(
            f"{engine} got unknown generation settings {sorted(unknown)}; known: "
            f"{sorted(allowed | set(renamed) | {'do_sample'})}."
        )
    if isinstance(kwargs.get("stop"), str):
        kwargs["stop"] = [kwargs["stop"]]
    kwargs.setdefault("max_tokens", 128)
    return kwargs


def failed_output(num_generations: int, error: BaseException) -> GenerateOutput:
    """A ``GenerateOutput`` whose every generation failed with ``error``."""
    info = error_info(error)
    return {
        "generations": [None] * num_generations,
        "statistics": {
            "input_tokens": [None] * num_generations,
            "output_tokens": [None] * num_generations,
        },
        "errors": [info] * num_generations,
    }


def error_info(error: BaseException) -> GenerationError:
    kind = error.kind if isinstance(error, LLMRequestError) else ErrorKind.UNKNOWN
    cause = error.__cause__ if isinstance(error, LLMRequestError) and error.__cause__ else error
    return {"type": type(cause).__name__, "kind": kind.value, "message": str(error)[:2000]}


class LLM(BaseModel, ABC):
    """Base of every LLM: a model name, ``load``/``unload`` and ``generate``."""

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=True,
        extra="forbid",
        protected_namespaces=(),
    )

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

    _cache_exclude: ClassVar[frozenset[str]] = frozenset(
        {"generation_kwargs", "structured_output_retries"}
    )
    """Fields that do not change an answer, left out of the request-cache key."""

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

    @property
    def runtime_parameters_names(self) -> dict[str, Any]:
        return runtime_parameter_names(self)

    def set_runtime_parameters(self, params: dict[str, Any]) -> None:
        set_runtime_parameters(self, params, owner=type(self).__name__)

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

    def supports_native_structured_output(self, spec: StructuredSpec) -> bool:
        """Whether this backend enforces ``spec`` itself (override in providers).

        When it does, the provider receives ``(messages, spec.wire())``, that is
        ``(messages, {"name": str, "schema": <JSON schema>})``, and must constrain the reply
        (OpenAI ``response_format``, Anthropic tool use, guided decoding...). When it does
        not, the base writes the schema into the last user message and the provider sees plain
        messages. Replies are validated either way.
        """
        return False

    def structured_spec(self, input: FormattedInput) -> StructuredSpec | None:
        """The schema a reply to ``input`` must match: the row's own, else the LLM's."""
        if isinstance(input, tuple):
            return resolve_spec(input[1]) if input[1] is not None else self._llm_spec()
        if self.structured_output is None:
            return None
        return self._llm_spec()

    def _llm_spec(self) -> StructuredSpec | None:
        if self.structured_output is None:
            return None
        cached = self._spec_cache
        if cached is None or cached[0] is not self.structured_output:
            cached = (self.structured_output, resolve_spec(self.structured_output))
            self._spec_cache = cached
        return cached[1]

    def structured_request(
        self, messages: ChatType, spec: StructuredSpec, previous_error: str | None = None
    ) -> FormattedInput:
        """What to send for a structured request: native, or with the schema in the prompt.

        A re-ask (``previous_error`` set) always carries the schema and the rejection reason in
        the prompt too, which rescues servers that silently ignore a native schema.
        """
        native = self.supports_native_structured_output(spec)
        if native and previous_error is None:
            return (messages, spec.wire())
        prompted = with_instructions(messages, spec, previous_error)
        return (prompted, spec.wire()) if native else prompted

    def _identity_text(self) -> str:
        text = self._identity_cache
        if text is None:
            text = self._identity_cache = canonical_json(self.cache_identity())
        return text

    def _base_key(self, input: FormattedInput, kwargs: dict[str, Any]) -> str:
        messages, schema = split_input(input)
        payload = {"messages": messages, "schema": schema, "generation_kwargs": kwargs}
        return request_base_key(self._identity_text(), payload)

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
            return self._generate_structured(list(inputs), specs, num_generations, kwargs)
        return self._generate_cached(inputs, num_generations, kwargs)

    def _generate_structured(
        self,
        inputs: list[FormattedInput],
        specs: list[StructuredSpec | None],
        num_generations: int,
        kwargs: dict[str, Any],
    ) -> list[GenerateOutput]:
        """Batch generation with validation and batched re-asks of invalid replies."""
        messages = [split_input(i)[0] for i in inputs]
        requests = [
            self.structured_request(m, s) if s is not None else m
            for m, s in zip(messages, specs, strict=True)
        ]
        outputs = self._generate_cached(requests, num_generations, kwargs)
        reasons: dict[tuple[int, int], str] = {}
        for i, (out, spec) in enumerate(zip(outputs, specs, strict=True)):
            if spec is not None:
                _validate_slots(out, spec, range(len(out["generations"])), i, reasons)
        for _ in range(self.structured_output_retries or 0):
            if not reasons:
                break
            slots = list(reasons)
            retry = [
                self.structured_request(messages[i], specs[i], reasons[(i, j)])  # type: ignore[arg-type]
                for i, j in slots
            ]
            again = self._generate_cached(retry, 1, kwargs)
            reasons = {}
            for (i, j), out in zip(slots, again, strict=True):
                _copy_slot(out, 0, outputs[i], j)
                _validate_slots(outputs[i], specs[i], [j], i, reasons)  # type: ignore[arg-type]
        for (i, j), reason in reasons.items():
            _fail_slot(outputs[i], j, reason)
        return outputs

    def _generate_cached(
        self, inputs: Sequence[FormattedInput], num_generations: int, kwargs: dict[str, Any]
    ) -> list[GenerateOutput]:
        cache = self._request_cache
        if cache is None:
            return self._generate(list(inputs), num_generations, **kwargs)
        base_keys = [self._base_key(i, kwargs) for i in inputs]
        results: list[GenerateOutput | None] = []
        for base in base_keys:
            found = cache.get_many([request_key(base, j) for j in range(num_generations)])
            results.append(_from_cache(found) if all(f is not None for f in found) else None)
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            fresh = self._generate([inputs[i] for i in todo], num_generations, **kwargs)
            items: list[tuple[str, CachedGeneration]] = []
            for i, out in zip(todo, fresh, strict=True):
                results[i] = out
                items.extend(_to_cache(base_keys[i], out))
            if items:
                cache.put_many(items)
        return [r for r in results if r is not None]

    supports_raw_completion: ClassVar[bool] = False
    """Whether ``complete`` can send a raw prompt with no chat template (Magpie needs it)."""

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        """Continue raw text prompts, with no chat template applied."""
        raise NotImplementedError(
            f"{type(self).__name__} only accepts chat messages, but raw completions were "
            "asked for (Magpie needs them). Use TransformersLLM, vLLM, LlamaCppLLM, or "
            "OpenAILLM against a server with a /v1/completions endpoint."
        )

    def _generate(
        self, inputs: list[FormattedInput], num_generations: int, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _generate")


def _validate_slots(
    out: GenerateOutput,
    spec: StructuredSpec,
    slots: Sequence[int] | range,
    index: int,
    reasons: dict[tuple[int, int], str],
) -> None:
    """Validate generations ``slots`` of ``out`` in place: valid ones become their JSON text,
    invalid ones are added to ``reasons`` under ``(index, slot)``. Failed requests stay failed."""
    errors = out.get("errors")
    for j in slots:
        if errors is not None and errors[j] is not None:
            continue
        text, reason = validate_reply(out["generations"][j], spec)
        if reason is None:
            out["generations"][j] = text
        else:
            reasons[(index, j)] = reason + f" (reply: {str(out['generations'][j])[:300]!r})"


def _copy_slot(src: GenerateOutput, k: int, dst: GenerateOutput, j: int) -> None:
    dst["generations"][j] = src["generations"][k] if k < len(src["generations"]) else None
    for key in ("input_tokens", "output_tokens"):
        values = src["statistics"][key]  # type: ignore[literal-required]
        dst["statistics"][key][j] = values[k] if k < len(values) else None  # type: ignore[literal-required]
    src_errors = src.get("errors")
    error = src_errors[k] if src_errors is not None and k < len(src_errors) else None
    if error is not None or dst.get("errors") is not None:
        dst.setdefault("errors", [None] * len(dst["generations"]))[j] = error


def _fail_slot(out: GenerateOutput, j: int, reason: str) -> None:
    out["generations"][j] = None
    errors = out.setdefault("errors", [None] * len(out["generations"]))
    errors[j] = {
        "type": "StructuredOutputError",
        "kind": "structured_output",
        "message": reason[:2000],
    }


def _to_cache(base: str, out: GenerateOutput) -> list[tuple[str, CachedGeneration]]:
    errors = out.get("errors") or [None] * len(out["generations"])
    stats = out["statistics"]
    return [
        (
            request_key(base, j),
            {
                "text": text,
                "input_tokens": stats["input_tokens"][j],
                "output_tokens": stats["output_tokens"][j],
            },
        )
        for j, text in enumerate(out["generations"])
        if errors[j] is None
    ]


def _from_cache(found: Sequence[CachedGeneration | None]) -> GenerateOutput:
    gens = [f for f in found if f is not None]
    return {
        "generations": [g["text"] for g in gens],
        "statistics": {
            "input_tokens": [g["input_tokens"] for g in gens],
            "output_tokens": [g["output_tokens"] for g in gens],
        },
    }


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
            self._scheduler = RequestScheduler(self._scheduler_limits(), self.classify_error)
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

    async def aclose(self) -> None:
        """Close clients bound to the running event loop (called when a run ends)."""

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **generation_kwargs: Any
    ) -> GenerateOutput:
        """Generate ``num_generations`` replies for one input; failures are kept, not raised."""
        kwargs = self.merged_generation_kwargs(generation_kwargs)
        cache = self._request_cache
        texts: list[str | None] = [None] * num_generations
        in_tok: list[int | None] = [None] * num_generations
        out_tok: list[int | None] = [None] * num_generations
        errors: list[GenerationError | None] = [None] * num_generations
        todo = list(range(num_generations))
        base = ""
        if cache is not None:
            base = self._base_key(input, kwargs)
            found = cache.get_many([request_key(base, j) for j in todo])
            for j, hit in enumerate(found):
                if hit is not None:
                    texts[j], in_tok[j], out_tok[j] = (
                        hit["text"],
                        hit["input_tokens"],
                        hit["output_tokens"],
                    )
            todo = [j for j, hit in enumerate(found) if hit is None]
        while todo:
            if len(todo) == 1:
                self._fill(todo, await self._one(input, 1, kwargs), texts, in_tok, out_tok, errors)
                break
            if self._n_ignored or not self.supports_n:
                outs = await asyncio.gather(*(self._one(input, 1, kwargs) for _ in todo))
                for slot, out in zip(todo, outs, strict=True):
                    self._fill([slot], out, texts, in_tok, out_tok, errors)
                break
            out = await self._one(input, len(todo), kwargs)
            got = min(len(out["generations"]), len(todo))
            self._fill(todo[:got], out, texts, in_tok, out_tok, errors)
            if got == len(todo):
                break
            self._n_ignored = True
            logger.info(
                "%s: the server returned %d of %d generations for n=%d; asking for the rest "
                "one request each from now on.",
                type(self).__name__,
                got,
                len(todo),
                len(todo),
            )
            todo = todo[got:]
        if cache is not None:
            items: list[tuple[str, CachedGeneration]] = [
                (
                    request_key(base, j),
                    {"text": texts[j], "input_tokens": in_tok[j], "output_tokens": out_tok[j]},
                )
                for j in range(num_generations)
                if errors[j] is None and texts[j] is not None
            ]
            if items:
                cache.put_many(items)
        result: GenerateOutput = {
            "generations": texts,
            "statistics": {"input_tokens": in_tok, "output_tokens": out_tok},
        }
        if any(e is not None for e in errors):
            result["errors"] = errors
        return result

    @staticmethod
    def _fill(
        slots: list[int],
        out: GenerateOutput,
        texts: list[str | None],
        in_tok: list[int | None],
        out_tok: list[int | None],
        errors: list[GenerationError | None],
    ) -> None:
        errs = out.get("errors") or [None] * len(out["generations"])
        stats = out["statistics"]
        for k, slot in enumerate(slots):
            texts[slot] = out["generations"][k]
            in_tok[slot] = stats["input_tokens"][k]
            out_tok[slot] = stats["output_tokens"][k]
            errors[slot] = errs[k]

    async def _one(self, input: FormattedInput, n: int, kwargs: dict[str, Any]) -> GenerateOutput:
        if self.structured_output is None and not isinstance(input, tuple):
            return await self._send(input, n, kwargs)
        spec = self.structured_spec(input)
        if spec is None:
            return await self._send(input, n, kwargs)
        return await self._one_structured(split_input(input)[0], spec, n, kwargs)

    async def _send(self, input: FormattedInput, n: int, kwargs: dict[str, Any]) -> GenerateOutput:
        """One request through the scheduler; a final failure becomes failed generations."""
        scheduler = self.scheduler
        estimated = 0
        if scheduler.token_budget is not None:
            messages = input[0] if isinstance(input, tuple) else input
            max_tokens = kwargs.get("max_new_tokens", kwargs.get("max_tokens"))
            estimated = n * estimate_tokens(messages, max_tokens)
        try:
            out = await scheduler.run(
                lambda: self._attempt(input, n, kwargs), estimated_tokens=estimated
            )
        except LLMRequestError as exc:
            return failed_output(n, exc)
        stats = out["statistics"]
        for i, o in zip(stats["input_tokens"], stats["output_tokens"], strict=False):
            scheduler.record_tokens(i, o, estimated // n)
        return out

    def _attempt(
        self, input: FormattedInput, n: int, kwargs: dict[str, Any]
    ) -> Awaitable[GenerateOutput]:
        # No request leaves while an answer already received is still uncommitted: a crash
        # then never repeats more requests than were in flight (the cache batches its writes).
        commit = getattr(self._request_cache, "commit_pending", None)
        if commit is not None:
            commit()
        return self._agenerate(input, n, **kwargs)

    async def _one_structured(
        self, messages: ChatType, spec: StructuredSpec, n: int, kwargs: dict[str, Any]
    ) -> GenerateOutput:
        """Send, validate each reply, and re-ask the invalid ones a bounded number of times."""
        out = await self._send(self.structured_request(messages, spec), n, kwargs)
        if len(out["generations"]) < n:  # a server that ignores n: the base fans out the rest
            n = len(out["generations"])
        reasons: dict[tuple[int, int], str] = {}
        _validate_slots(out, spec, range(n), 0, reasons)
        for _ in range(self.structured_output_retries or 0):
            if not reasons:
                break
            slots = [j for _, j in reasons]
            again = await asyncio.gather(
                *(
                    self._send(self.structured_request(messages, spec, reasons[(0, j)]), 1, kwargs)
                    for j in slots
                )
            )
            reasons = {}
            for j, single in zip(slots, again, strict=True):
                _copy_slot(single, 0, out, j)
                _validate_slots(out, spec, [j], 0, reasons)
        for (_, j), reason in reasons.items():
            _fail_slot(out, j, reason)
        return out

    def generate(
        self,
        inputs: Sequence[FormattedInput],
        num_generations: int = 1,
        **generation_kwargs: Any,
    ) -> list[GenerateOutput]:
        """Synchronous batch generation; runs the requests concurrently under the scheduler."""
        return run_sync(self._agenerate_many(list(inputs), num_generations, generation_kwargs))

    async def _agenerate_many(
        self, inputs: list[FormattedInput], num_generations: int, kwargs: dict[str, Any]
    ) -> list[GenerateOutput]:
        try:
            return list(
                await asyncio.gather(
                    *(self.agenerate(i, num_generations, **kwargs) for i in inputs)
                )
            )
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
