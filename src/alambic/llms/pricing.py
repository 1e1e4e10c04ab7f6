"""What a request costs: a maintained price table, overridable per LLM.

Prices come from ``genai-prices`` (pydantic's price table, shipped as a snapshot inside the
package, so nothing is fetched at run time; ``pip install "alambic[cost]"``). It was chosen
over the alternatives because it is the only one that works offline, is typed and kept up to
date, and knows batch rates, tiered prices (long-context surcharges) and cached-input rates:
LiteLLM's table downloads itself at import and drags in LiteLLM; ``tokencost`` covers only
plain per-token rates and no batch discount.

A private deployment, or a model the table does not know, gets a price in one of two ways::

    OpenAILLM(model="my-finetune", price_per_million_input=0.5, price_per_million_output=2.0)
    register_price("my-finetune", input_per_million=0.5, output_per_million=2.0)

An unknown price is never a silent zero: :class:`Pricing` says it is unknown and why, and
costs computed with it are ``None``. Engines running in this process (transformers, vLLM,
llama.cpp) cost nothing per token and say so.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from alambic.llms.base import LLM

__all__ = [
    "BATCH_DISCOUNT",
    "Pricing",
    "pricing_for",
    "register_price",
    "unregister_price",
]

#: Share of the standard price that a batch API charges when the table has no batch rate.
BATCH_DISCOUNT: Final = Decimal("0.5")

_MILLION: Final = Decimal(1_000_000)

# Which price-table provider serves each client class (looked up along the class's MRO, so a
# user's subclass of OpenAILLM is priced as OpenAI). Classes not listed have no table price.
_TABLE_PROVIDERS: Final[dict[str, str]] = {
    "OpenAILLM": "openai",
    "AzureOpenAILLM": "azure",
    "AnthropicLLM": "anthropic",
    "MistralLLM": "mistral",
    "GroqLLM": "groq",
    "TogetherLLM": "together",
    "CohereLLM": "cohere",
    "VertexAILLM": "google",
}
# Engines in this process (and the fake one of tests and demos): no per-token price.
_LOCAL_ENGINES: Final = frozenset({"TransformersLLM", "vLLM", "LlamaCppLLM", "FakeLLM"})

_registered: dict[tuple[str, str | None], tuple[Decimal, Decimal, Decimal | None]] = {}
_registered_lock = threading.Lock()


def register_price(
    model: str,
    *,
    input_per_million: float | str | Decimal,
    output_per_million: float | str | Decimal,
    provider: str | None = None,
    batch_discount: float | str | Decimal | None = None,
) -> None:
    """Add or replace a price-table entry for ``model`` (USD per million tokens).

    ``provider`` (``"openai"``, ``"anthropic"``, ...) limits the entry to that provider's
    clients; ``None`` matches any client of that model name. ``batch_discount`` is the
    share of the price a batch API charges (default :data:`BATCH_DISCOUNT`).
    """
    entry = (
        _decimal(input_per_million, "input_per_million"),
        _decimal(output_per_million, "output_per_million"),
        None if batch_discount is None else _decimal(batch_discount, "batch_discount"),
    )
    with _registered_lock:
        _registered[(model, provider)] = entry


def unregister_price(model: str, *, provider: str | None = None) -> None:
    """Remove an entry added by :func:`register_price` (no error if there is none)."""
    with _registered_lock:
        _registered.pop((model, provider), None)


def _decimal(value: float | str | Decimal, name: str) -> Decimal:
    number = Decimal(str(value))
    if not number.is_finite() or number < 0:
        raise ValueError(f"{name} must be a price in USD >= 0, got {value!r}.")
    return number


@dataclass(frozen=True, slots=True)
class Pricing:
    """How one LLM's requests are priced.

    ``kind`` is ``"table"`` (genai-prices), ``"override"`` (set on the LLM or registered),
    ``"local"`` (an engine in this process: free per token) or ``"unknown"``; ``source``
    says where the price comes from, or for ``"unknown"`` why there is none and the fix.
    """

    kind: Literal["table", "override", "local", "unknown"]
    source: str
    model: str
    provider: str | None = None
    input_per_million: Decimal | None = None
    output_per_million: Decimal | None = None
    batch_discount: Decimal = BATCH_DISCOUNT
    _memo: dict[tuple[int, int, int, bool], Decimal] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def known(self) -> bool:
        return self.kind != "unknown"

    def cost(
        self, input_tokens: int, output_tokens: int, *, cached_tokens: int = 0, batch: bool = False
    ) -> Decimal | None:
        """USD for one request with this usage; ``None`` when the price is unknown.

        ``input_tokens`` counts every prompt token, ``cached_tokens`` the part of them the
        provider served from its prompt cache (cheaper where the table knows a cache rate).
        """
        if self.kind == "unknown":
            return None
        if self.kind == "local":
            return Decimal(0)
        if self.kind == "override":
            assert self.input_per_million is not None
            assert self.output_per_million is not None
            total = (
                input_tokens * self.input_per_million + output_tokens * self.output_per_million
            ) / _MILLION
            return total * self.batch_discount if batch else total
        key = (input_tokens, output_tokens, cached_tokens, batch)
        found = self._memo.get(key)
        if found is None:
            found = _table_cost(self, input_tokens, output_tokens, cached_tokens, batch)
            if len(self._memo) < 100_000:
                self._memo[key] = found
        return found

    def describe(self) -> str:
        if self.kind == "unknown":
            return f"unknown price: {self.source}"
        if self.kind == "local":
            return f"$0 ({self.source})"
        if self.input_per_million is not None and self.output_per_million is not None:
            return (
                f"${_plain(self.input_per_million)}/M input, "
                f"${_plain(self.output_per_million)}/M output "
                f"({self.source})"
            )
        return self.source


def _plain(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _table_cost(
    pricing: Pricing, input_tokens: int, output_tokens: int, cached_tokens: int, batch: bool
) -> Decimal:
    from genai_prices import Usage, calc_price

    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cached_tokens or None,
    )
    context: Any = {"processing": "batch"} if batch else None
    result = calc_price(usage, pricing.model, provider_id=pricing.provider, price_context=context)
    return Decimal(str(result.total_price))


def _provider_of(llm: LLM) -> str | None:
    for cls in type(llm).__mro__:
        provider = _TABLE_PROVIDERS.get(cls.__name__)
        if provider is not None:
            return provider
    return None


def _custom_endpoint(llm: LLM) -> str | None:
    """The base URL when an OpenAI-style client points somewhere else than its provider."""
    resolve = getattr(llm, "resolved_base_url", None)
    default = getattr(type(llm), "default_base_url", None)
    if resolve is None or not default:
        return None
    url = resolve()
    return url if url and url.rstrip("/") != str(default).rstrip("/") else None


def pricing_for(llm: LLM) -> Pricing:
    """The price of ``llm``'s requests: its own override, a registered entry, the table."""
    model = llm.model_name
    pin = getattr(llm, "price_per_million_input", None)
    pout = getattr(llm, "price_per_million_output", None)
    name = type(llm).__name__
    if (pin is None) != (pout is None):
        raise ValueError(
            f"{name}(model={model!r}) sets only one of price_per_million_input and "
            "price_per_million_output: set both (USD per million tokens)."
        )
    provider = _provider_of(llm)
    if pin is not None and pout is not None:
        return Pricing(
            kind="override",
            source=f"price_per_million_input/output on {name}",
            model=model,
            provider=provider,
            input_per_million=_decimal(pin, "price_per_million_input"),
            output_per_million=_decimal(pout, "price_per_million_output"),
        )
    with _registered_lock:
        entry = _registered.get((model, provider)) or _registered.get((model, None))
    if entry is not None:
        return Pricing(
            kind="override",
            source=f"register_price({model!r})",
            model=model,
            provider=provider,
            input_per_million=entry[0],
            output_per_million=entry[1],
            batch_discount=entry[2] if entry[2] is not None else BATCH_DISCOUNT,
        )
    if any(cls.__name__ in _LOCAL_ENGINES for cls in type(llm).__mro__):
        return Pricing(kind="local", source=f"{name} runs in this process", model=model)
    fix = (
        f"set price_per_million_input/price_per_million_output on the LLM or call "
        f"alambic.llms.pricing.register_price({model!r}, input_per_million=..., "
        "output_per_million=...)"
    )
    if provider is None:
        return Pricing(kind="unknown", source=f"{name} has no price table; {fix}", model=model)
    custom = _custom_endpoint(llm) if provider != "azure" else None
    if custom is not None:
        return Pricing(
            kind="unknown",
            source=f"{name} points at {custom}, not {provider}'s API; {fix}",
            model=model,
            provider=provider,
        )
    return _from_table(model, provider, fix)


def _from_table(model: str, provider: str, fix: str) -> Pricing:
    try:
        from genai_prices import Usage, calc_price
        from genai_prices import __version__ as table_version
    except ImportError:
        return Pricing(
            kind="unknown",
            source=f'the price table is not installed (pip install "alambic[cost]"), or {fix}',
            model=model,
            provider=provider,
        )
    try:
        million_in = calc_price(Usage(input_tokens=1_000_000), model, provider_id=provider)
        million_out = calc_price(Usage(output_tokens=1_000_000), model, provider_id=provider)
    except LookupError as exc:
        return Pricing(
            kind="unknown",
            source=f"genai-prices {table_version} does not know it ({exc}); {fix}",
            model=model,
            provider=provider,
        )
    return Pricing(
        kind="table",
        source=f"genai-prices {table_version}: {provider}/{million_in.model.id}",
        model=model,
        provider=provider,
        input_per_million=Decimal(str(million_in.total_price)),
        output_per_million=Decimal(str(million_out.total_price)),
    )
