"""The request path of :class:`~alambic.llms.base.AsyncLLM`: the request cache, then the
scheduler, then one attempt; the fan-out for servers that ignore ``n``; structured output
validated and re-asked. ``AsyncLLM`` delegates its ``_arequest``, ``_send`` and
``_one_structured`` here (kept apart so that ``base`` stays readable)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from alambic.budget import current_budget
from alambic.errors import LLMRequestError
from alambic.llms.cache import answered, request_key
from alambic.llms.outputs import copy_slot, fail_slot, failed_output, fill_slots, validate_slots
from alambic.llms.scheduler import estimate_tokens
from alambic.llms.typing import ChatType, GenerateOutput, GenerationError

if TYPE_CHECKING:
    from alambic.llms.base import AsyncLLM
    from alambic.llms.structured import StructuredSpec

logger = logging.getLogger("alambic")


async def request(
    llm: AsyncLLM, input: Any, num_generations: int, kwargs: dict[str, Any], raw: bool
) -> GenerateOutput:
    """The one request path: the cache, then requests through the scheduler, with the
    fan-out for servers that ignore ``n``; new answers go back to the cache."""
    cache = llm._request_cache
    texts: list[str | None] = [None] * num_generations
    in_tok: list[int | None] = [None] * num_generations
    out_tok: list[int | None] = [None] * num_generations
    errors: list[GenerationError | None] = [None] * num_generations
    reasonings: list[str | None] = [None] * num_generations
    todo = list(range(num_generations))
    base = ""
    latency: float | None = None  # of the (slowest) request answering this input
    retries = 0  # failed attempts before the answers
    if cache is not None:
        base = llm._base_key(input, kwargs, raw)
        keys = [request_key(base, j) for j in todo]
        # a cache on disk looks up the rows of a batch in one query (see aget_many)
        aget_many = getattr(cache, "aget_many", None)
        found = await aget_many(keys) if aget_many is not None else cache.get_many(keys)
        for j, hit in enumerate(found):
            if hit is not None:
                texts[j], in_tok[j], out_tok[j] = (
                    hit["text"],
                    hit["input_tokens"],
                    hit["output_tokens"],
                )
                reasonings[j] = hit.get("reasoning")
                if "latency_s" in hit:  # of the request that answered it, when first made
                    latency = max(latency or 0.0, hit["latency_s"])
                    retries = max(retries, hit.get("retries", 0))
        todo = [j for j, hit in enumerate(found) if hit is None]
    while todo:
        if len(todo) == 1:
            out = await llm._one(input, 1, kwargs, raw)
            fill_slots(todo, out, texts, in_tok, out_tok, errors, reasonings)
            latency = out.get("latency_s", latency)
            retries += out.get("retries", 0)
            break
        if llm._n_ignored or not llm.supports_n:
            outs = await asyncio.gather(*(llm._one(input, 1, kwargs, raw) for _ in todo))
            for slot, out in zip(todo, outs, strict=True):
                fill_slots([slot], out, texts, in_tok, out_tok, errors, reasonings)
                latency = max(latency or 0.0, out.get("latency_s", 0.0)) or None
                retries += out.get("retries", 0)
            break
        out = await llm._one(input, len(todo), kwargs, raw)
        latency = max(latency or 0.0, out.get("latency_s", 0.0)) or None
        retries += out.get("retries", 0)
        got = min(len(out["generations"]), len(todo))
        fill_slots(todo[:got], out, texts, in_tok, out_tok, errors, reasonings)
        if got == len(todo):
            break
        llm._n_ignored = True
        logger.info(
            "%s: the server returned %d of %d generations for n=%d; asking for the rest "
            "one request each from now on.",
            type(llm).__name__,
            got,
            len(todo),
            len(todo),
        )
        todo = todo[got:]
    if cache is not None:
        items = answered(
            base, texts, in_tok, out_tok, errors, latency, retries, reasonings=reasonings
        )
        if items:
            cache.put_many(items)
    result: GenerateOutput = {
        "generations": texts,
        "statistics": {"input_tokens": in_tok, "output_tokens": out_tok},
    }
    if any(e is not None for e in errors):
        result["errors"] = errors
    if any(r is not None for r in reasonings):
        result["reasonings"] = reasonings
    if latency is not None:
        result["latency_s"] = latency
    if retries:
        result["retries"] = retries
    return result


async def send(
    llm: AsyncLLM, input: Any, n: int, kwargs: dict[str, Any], raw: bool = False
) -> GenerateOutput:
    """One request through the scheduler; a final failure becomes failed generations."""
    scheduler = llm.scheduler
    estimated = 0
    if scheduler.token_budget is not None:
        messages = input[0] if isinstance(input, tuple) else input
        max_tokens = kwargs.get("max_new_tokens", kwargs.get("max_tokens"))
        estimated = n * estimate_tokens(messages, max_tokens)
    ticket = None
    budget = current_budget()
    if budget is not None:  # a run with a budget: claim this request's worst case
        messages = input[0] if isinstance(input, tuple) else input
        max_tokens = kwargs.get("max_new_tokens", kwargs.get("max_tokens"))
        ticket = budget.ticket(llm, messages, n, max_tokens)
    try:
        out = await scheduler.run(
            lambda: llm._attempt(input, n, kwargs, raw),
            estimated_tokens=estimated,
            ticket=ticket,
        )
    except LLMRequestError as exc:
        failed = failed_output(n, exc)
        if exc.attempts > 1 and scheduler.limits.record_request_info:
            failed["retries"] = exc.attempts - 1
        return failed
    stats = out["statistics"]
    if ticket is not None:
        outputs = stats["output_tokens"]
        ticket.settle(
            (stats["input_tokens"] or [None])[0],
            None if any(o is None for o in outputs) else sum(o or 0 for o in outputs),
            (stats.get("cached_tokens") or [None])[0],
        )
    for i, o in zip(stats["input_tokens"], stats["output_tokens"], strict=False):
        scheduler.record_tokens(i, o, estimated // n)
    return out


async def one_structured(
    llm: AsyncLLM, messages: ChatType, spec: StructuredSpec, n: int, kwargs: dict[str, Any]
) -> GenerateOutput:
    """Send, validate each reply, and re-ask the invalid ones a bounded number of times."""
    out = await llm._send(llm.structured_request(messages, spec), n, kwargs)
    if len(out["generations"]) < n:  # a server that ignores n: the base fans out the rest
        n = len(out["generations"])
    reasons: dict[tuple[int, int], str] = {}
    validate_slots(out, spec, range(n), 0, reasons)
    for _ in range(llm.structured_output_retries or 0):
        if not reasons:
            break
        slots = [j for _, j in reasons]
        again = await asyncio.gather(
            *(
                llm._send(llm.structured_request(messages, spec, reasons[(0, j)]), 1, kwargs)
                for j in slots
            )
        )
        reasons = {}
        for j, single in zip(slots, again, strict=True):
            copy_slot(single, 0, out, j)
            validate_slots(out, spec, [j], 0, reasons)
    for (_, j), reason in reasons.items():
        fail_slot(out, j, reason)
    return out


__all__ = ["one_structured", "request", "send"]
