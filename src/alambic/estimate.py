"""``Pipeline.estimate``: requests, tokens, cost and time of a run, before paying for it.

The pipeline runs for real, in memory, with every task's LLM replaced by a stand-in that
records each prompt and answers at once: every step's own code decides how many rows reach
each task (filters, routing, generators), and every prompt is rendered by the task's own
``format_input``. Nothing is sent anywhere, nothing is stored.

An LLM's reply is not known before it is paid for, so the stand-in replies with filler of
the expected length. That length is ``max_new_tokens`` (an upper bound) unless a sample was
asked for: ``sample=N`` first runs the pipeline for real on N rows (a paid dry run) and
takes each task's mean reply length and request latency from it. Steps fed by an LLM's
output see the filler in their prompts, so their input tokens are extrapolated, and marked
so.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import PrivateAttr

from alambic.llms.base import LLM, AsyncLLM, split_input
from alambic.llms.pricing import Pricing, pricing_for
from alambic.llms.token_count import TokenCounter, schema_tokens, token_counter_for
from alambic.llms.typing import FormattedInput, GenerateOutput

if TYPE_CHECKING:
    from alambic.pipeline.base import Pipeline

__all__ = ["Estimate", "StepEstimate", "estimate_pipeline"]

#: Reply length assumed when neither ``max_new_tokens`` nor a sample says more.
DEFAULT_OUTPUT_TOKENS = 256


@dataclass
class StepEstimate:
    """One task's share of a run. Costs are USD; ``None`` means the price is unknown."""

    step: str
    llm: str
    model: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    worst_output_tokens: int = 0
    input_method: str = ""
    input_exact: bool = True
    output_basis: str = ""
    fed_by_llm: bool = False
    price: str = ""
    cost: Decimal | None = None
    batch_cost: Decimal | None = None
    worst_case_cost: Decimal | None = None
    seconds: float | None = None
    time_basis: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for key in ("cost", "batch_cost", "worst_case_cost"):
            value = out[key]
            out[key] = None if value is None else float(value)
        return out


@dataclass
class Estimate:
    """Per task estimates; ``str(estimate)`` is the table ``alambic estimate`` prints."""

    pipeline: str
    steps: list[StepEstimate] = field(default_factory=list)
    sample_rows: int | None = None

    def step(self, name: str) -> StepEstimate:
        for s in self.steps:
            if s.step == name:
                return s
        raise KeyError(f"No task {name!r} in this estimate; tasks: {[s.step for s in self.steps]}")

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.steps)

    @property
    def cost(self) -> Decimal | None:
        """Total USD, or ``None`` when any task's price is unknown (see ``known_cost``)."""
        if any(s.cost is None for s in self.steps):
            return None
        return sum((s.cost for s in self.steps if s.cost is not None), Decimal(0))

    @property
    def known_cost(self) -> Decimal:
        return sum((s.cost for s in self.steps if s.cost is not None), Decimal(0))

    @property
    def seconds(self) -> float | None:
        """Sum of the tasks' times (an upper bound: tasks overlap in a run)."""
        if any(s.seconds is None for s in self.steps):
            return None
        return sum(s.seconds for s in self.steps if s.seconds is not None)

    def to_dict(self) -> dict[str, Any]:
        cost = self.cost
        return {
            "pipeline": self.pipeline,
            "sample_rows": self.sample_rows,
            "requests": self.requests,
            "cost": None if cost is None else float(cost),
            "known_cost": float(self.known_cost),
            "seconds": self.seconds,
            "steps": [s.to_dict() for s in self.steps],
        }

    def __str__(self) -> str:
        head = ("step", "model", "requests", "input tok", "output tok", "cost $", "batch $", "time")
        rows = [head]
        for s in self.steps:
            rows.append(
                (
                    s.step,
                    s.model,
                    f"{s.requests:,}",
                    f"{s.input_tokens:,}" + ("" if s.input_exact else "~"),
                    f"{s.output_tokens:,}",
                    _money(s.cost),
                    _money(s.batch_cost),
                    _duration(s.seconds),
                )
            )
        cost = self.cost
        rows.append(
            (
                "total",
                "",
                f"{self.requests:,}",
                f"{sum(s.input_tokens for s in self.steps):,}",
                f"{sum(s.output_tokens for s in self.steps):,}",
                _money(cost) if cost is not None else f">= {_money(self.known_cost)}",
                "",
                _duration(self.seconds),
            )
        )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        notes = []
        for s in self.steps:
            notes.append(f"{s.step}: price {s.price}")
            notes.append(f"{s.step}: input tokens by {s.input_method}")
            notes.append(f"{s.step}: output tokens {s.output_basis}")
            notes.append(f"{s.step}: time {s.time_basis}")
        if any(not s.input_exact for s in self.steps):
            notes.append("~ input tokens approximate or extrapolated")
        return "\n".join([f"Estimate for pipeline {self.pipeline!r}", *lines, "", *notes])


def _money(value: Decimal | None) -> str:
    if value is None:
        return "unknown"
    return f"{value:,.4f}" if value < 100 else f"{value:,.2f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


# -- the stand-ins ---------------------------------------------------------------------------


class _Tally:
    """What one task's stand-in saw."""

    def __init__(
        self,
        llm: LLM,
        counter: TokenCounter,
        pricing: Pricing,
        output_tokens: int,
        worst_output_tokens: int | None,
    ) -> None:
        self.llm = llm
        self.counter = counter
        self.pricing = pricing
        self.output_tokens = output_tokens
        self.worst_output_tokens = worst_output_tokens
        self.requests = 0
        self.input_tokens = 0
        self.out_tokens = 0
        self.worst_out_tokens = 0
        self.cost: Decimal | None = Decimal(0)
        self.batch_cost: Decimal | None = Decimal(0)
        self.worst_cost: Decimal | None = Decimal(0)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Tally:
        return self  # replicas of a task (deep copies) count into the same tally

    def record(self, input: FormattedInput, n: int, kwargs: dict[str, Any]) -> None:
        messages, schema = split_input(input)
        tokens = self.counter.count(messages)
        if schema is not None:
            tokens += schema_tokens(self.counter, _schema_json(schema))
        merged = self.llm.merged_generation_kwargs(kwargs)
        cap = _max_tokens(merged)
        out = self.output_tokens if cap is None else min(self.output_tokens, cap)
        worst = cap if cap is not None else (self.worst_output_tokens or out)
        batch = bool(getattr(self.llm, "use_batch_api", False))  # the batch API's price
        one_request_for_n = isinstance(self.llm, AsyncLLM) and type(self.llm).supports_n
        shape = [(n, n)] if one_request_for_n or n == 1 else [(1, 1)] * n
        for _, outputs in shape:
            self.requests += 1
            self.input_tokens += tokens
            self.out_tokens += out * outputs
            self.worst_out_tokens += worst * outputs
            self.cost = _add(self.cost, self.pricing.cost(tokens, out * outputs, batch=batch))
            self.batch_cost = _add(
                self.batch_cost, self.pricing.cost(tokens, out * outputs, batch=True)
            )
            self.worst_cost = _add(
                self.worst_cost, self.pricing.cost(tokens, worst * outputs, batch=batch)
            )


def _add(total: Decimal | None, value: Decimal | None) -> Decimal | None:
    return None if total is None or value is None else total + value


def _schema_json(schema: Any) -> Any:
    to_schema = getattr(schema, "model_json_schema", None)
    return to_schema() if callable(to_schema) else schema


def _max_tokens(kwargs: Mapping[str, Any]) -> int | None:
    for key in ("max_new_tokens", "max_tokens", "max_completion_tokens"):
        value = kwargs.get(key)
        if value is not None:
            return int(value)
    return None


def _filler(tokens: int) -> str:
    return " ".join(["x"] * max(0, tokens))


class _StandInLLM(AsyncLLM):
    """Records each prompt into a tally and replies at once with filler."""

    _tally: _Tally = PrivateAttr()

    @property
    def model_name(self) -> str:
        return self._tally.llm.model_name

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:  # pragma: no cover - agenerate below never calls it
        raise NotImplementedError

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **generation_kwargs: Any
    ) -> GenerateOutput:
        return self._reply(input, num_generations, generation_kwargs)

    def generate(
        self, inputs: Sequence[FormattedInput], num_generations: int = 1, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        return [self._reply(i, num_generations, generation_kwargs) for i in inputs]

    def _reply(self, input: FormattedInput, n: int, kwargs: dict[str, Any]) -> GenerateOutput:
        tally = self._tally
        tally.record(input, n, kwargs)
        cap = _max_tokens(tally.llm.merged_generation_kwargs(kwargs))
        out = tally.output_tokens if cap is None else min(tally.output_tokens, cap)
        text = _filler(out)
        return {
            "generations": [text] * n,
            "statistics": {"input_tokens": [0] * n, "output_tokens": [out] * n},
        }


class _Measures:
    def __init__(self) -> None:
        self.output_tokens: list[int] = []
        self.latencies: list[float] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> _Measures:
        return self  # replicas of a task (deep copies) record into the same lists


class _StandInRawLLM(_StandInLLM):
    """The stand-in of an LLM that also continues raw prompts (Magpie, URIAL)."""

    supports_raw_completion: ClassVar[bool] = True

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        return [
            self._reply([{"role": "user", "content": p}], num_generations, generation_kwargs)
            for p in prompts
        ]


class _SampleLLM(AsyncLLM):
    """Forwards to the real LLM and records reply lengths and request latency."""

    _inner: LLM = PrivateAttr()
    _measures: _Measures = PrivateAttr(default_factory=_Measures)

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    def load(self) -> None:
        self._inner.load()

    def unload(self) -> None:
        self._inner.unload()

    def set_request_cache(self, cache: Any) -> None:
        self._inner.set_request_cache(None)  # a sample measures the provider, not the cache

    async def aclose(self) -> None:
        if isinstance(self._inner, AsyncLLM):
            await self._inner.aclose()

    async def _agenerate(
        self, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:  # pragma: no cover - agenerate below never calls it
        raise NotImplementedError

    async def agenerate(
        self, input: FormattedInput, num_generations: int = 1, **generation_kwargs: Any
    ) -> GenerateOutput:
        started = time.perf_counter()
        inner = self._inner
        if isinstance(inner, AsyncLLM):
            out = await inner.agenerate(input, num_generations, **generation_kwargs)
        else:
            out = (
                await asyncio.to_thread(
                    inner.generate, [input], num_generations, **generation_kwargs
                )
            )[0]
        self._measures.latencies.append(time.perf_counter() - started)
        self._measures.output_tokens.extend(
            t for t in out["statistics"]["output_tokens"] if t is not None
        )
        return out


class _SampleRawLLM(_SampleLLM):
    supports_raw_completion: ClassVar[bool] = True

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **generation_kwargs: Any
    ) -> list[GenerateOutput]:
        started = time.perf_counter()
        outs = self._inner.complete(prompts, num_generations, **generation_kwargs)
        self._measures.latencies.append((time.perf_counter() - started) / max(1, len(prompts)))
        for out in outs:
            self._measures.output_tokens.extend(
                t for t in out["statistics"]["output_tokens"] if t is not None
            )
        return outs


@contextmanager
def _swapped(pipeline: Pipeline, make: Any) -> Iterator[dict[str, Any]]:
    """Give every task ``make(name, llm)`` as its LLM for the block, then the real one back."""
    originals: dict[str, LLM] = {}
    made: dict[str, Any] = {}
    try:
        for name, step in pipeline.dag.steps.items():
            llm = getattr(step, "llm", None)
            if isinstance(llm, LLM):
                originals[name] = llm
                made[name] = make(name, llm)
                step.llm = made[name]  # type: ignore[attr-defined]
        yield made
    finally:
        for name, llm in originals.items():
            pipeline.dag.steps[name].llm = llm  # type: ignore[attr-defined]


# -- the estimate ----------------------------------------------------------------------------


def _run_quietly(pipeline: Pipeline, dataset: Any, rows: int | None) -> None:
    if rows is None:
        pipeline.run(use_cache=False, dataset=dataset, show_progress=False, storage=False)
    elif dataset is not None:
        pipeline.run(
            use_cache=False, dataset=_head(dataset, rows), show_progress=False, storage=False
        )
    else:
        pipeline.dry_run(batch_size=rows)


def _head(dataset: Any, rows: int) -> Any:
    if isinstance(dataset, list):
        return dataset[:rows]
    return dataset.select(range(min(rows, len(dataset))))


def _sample(
    pipeline: Pipeline, dataset: Any, rows: int
) -> dict[str, tuple[float | None, float | None]]:
    """Per task: mean reply tokens and mean request seconds over a real run of ``rows``."""

    def wrap(_name: str, llm: LLM) -> _SampleLLM:
        kind = _SampleRawLLM if getattr(llm, "supports_raw_completion", False) else _SampleLLM
        sample = kind(max_concurrency=getattr(llm, "max_concurrency", None) or 64)
        sample._inner = llm
        return sample

    with _swapped(pipeline, wrap) as made:
        _run_quietly(pipeline, dataset, rows)
    found: dict[str, tuple[float | None, float | None]] = {}
    for name, sample in made.items():
        outs, lats = sample._measures.output_tokens, sample._measures.latencies
        found[name] = (
            sum(outs) / len(outs) if outs else None,
            sum(lats) / len(lats) if lats and isinstance(sample._inner, AsyncLLM) else None,
        )
    return found


def estimate_pipeline(
    pipeline: Pipeline,
    *,
    parameters: dict[str, dict[str, Any]] | None = None,
    dataset: Any = None,
    sample: int | None = None,
    token_counters: Mapping[str, Any] | None = None,
    latency_s: float | None = None,
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> Estimate:
    """See :meth:`alambic.pipeline.Pipeline.estimate`."""
    if sample is not None and sample < 1:
        raise ValueError(f"estimate(sample=...) takes a number of rows >= 1, got {sample!r}.")
    pipeline.apply_parameters(parameters)
    order = pipeline.dag.topological_order()
    llm_steps = [n for n in order if isinstance(getattr(pipeline.dag.steps[n], "llm", None), LLM)]
    unknown = set(token_counters or {}) - set(llm_steps)
    if unknown:
        raise ValueError(
            f"estimate(token_counters=...) names {sorted(unknown)}, which are not tasks of "
            f"pipeline {pipeline.name!r}; tasks: {llm_steps}."
        )
    calibration = _sample(pipeline, dataset, sample) if sample else {}
    tallies: dict[str, _Tally] = {}
    bases: dict[str, str] = {}

    def stand_in(name: str, llm: LLM) -> _StandInLLM:
        mean_out, _ = calibration.get(name, (None, None))
        cap = _max_tokens(llm.merged_generation_kwargs({}))
        if mean_out is not None:
            expected = math.ceil(mean_out)
            bases[name] = f"mean of {sample} sampled rows ({mean_out:.1f} per reply)"
        elif cap is not None:
            expected = cap
            bases[name] = f"upper bound: max_new_tokens={cap} per reply"
        else:
            expected = default_output_tokens
            bases[name] = (
                f"assumed {expected} per reply (no max_new_tokens set; pass sample=N to measure)"
            )
        counter = token_counter_for(llm, (token_counters or {}).get(name))
        tally = _Tally(llm, counter, pricing_for(llm), expected, cap)
        tallies[name] = tally
        kind = _StandInRawLLM if getattr(llm, "supports_raw_completion", False) else _StandInLLM
        made = kind(max_concurrency=getattr(llm, "max_concurrency", None) or 64)
        made._tally = tally
        return made

    with _swapped(pipeline, stand_in):
        _run_quietly(pipeline, dataset, None)

    result = Estimate(pipeline=pipeline.name, sample_rows=sample)
    for name in llm_steps:
        tally = tallies[name]
        fed = any(a in tallies for a in pipeline.dag.ancestors(name))
        llm = tally.llm
        latency = calibration.get(name, (None, None))[1] or latency_s
        seconds, basis = _time(llm, tally, latency)
        result.steps.append(
            StepEstimate(
                step=name,
                llm=type(llm).__name__,
                model=llm.model_name,
                requests=tally.requests,
                input_tokens=tally.input_tokens,
                output_tokens=tally.out_tokens,
                worst_output_tokens=tally.worst_out_tokens,
                input_method=tally.counter.method
                + ("; prompts hold stand-ins for upstream LLM replies" if fed else ""),
                input_exact=tally.counter.exact and not fed,
                output_basis=bases[name],
                fed_by_llm=fed,
                price=tally.pricing.describe(),
                cost=tally.cost,
                batch_cost=tally.batch_cost,
                worst_case_cost=tally.worst_cost,
                seconds=seconds,
                time_basis=basis,
            )
        )
    return result


def _time(llm: LLM, tally: _Tally, latency: float | None) -> tuple[float | None, str]:
    """Seconds for a task's requests at its rate limits and concurrency."""
    if getattr(llm, "use_batch_api", False):
        return None, "batch API: jobs are answered within their 24 h completion window"
    bounds: list[tuple[float, str]] = []
    rpm = getattr(llm, "rpm", None)
    tpm = getattr(llm, "tpm", None)
    concurrency = getattr(llm, "max_concurrency", None)
    if rpm:
        bounds.append((tally.requests / rpm * 60, f"rpm={rpm:g}"))
    if tpm:
        bounds.append(((tally.input_tokens + tally.out_tokens) / tpm * 60, f"tpm={tpm:g}"))
    if latency is not None and concurrency:
        bounds.append(
            (
                tally.requests * latency / concurrency,
                f"{latency:.3f}s per request at concurrency {concurrency}",
            )
        )
    if not bounds:
        return None, (
            "unknown: no rpm/tpm limit set and no latency known (pass sample=N or latency_s=)"
        )
    seconds, why = max(bounds)
    return seconds, f"bounded by {why}"
