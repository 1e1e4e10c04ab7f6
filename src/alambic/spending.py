"""What a run may spend and what it spent: :class:`Budget` (the cap a user sets),
:class:`Spend` (requests, tokens, USD) and how amounts are shown. The run's accounting is
:mod:`alambic.budget`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from alambic.errors import AlambicError


class Budget(BaseModel):
    """A cap on a run: USD, tokens (input + output), requests; any combination."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd: float | None = Field(default=None, ge=0, description="Most USD the run may spend.")
    tokens: int | None = Field(default=None, ge=0, description="Most input + output tokens.")
    requests: int | None = Field(default=None, ge=0, description="Most requests sent.")

    @classmethod
    def of(cls, value: Budget | float | int | dict[str, Any]) -> Budget:
        """``run(budget=...)`` accepts a Budget, a number (USD) or a dict of its fields."""
        if isinstance(value, Budget):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(usd=float(value))
        raise ValueError(
            f"budget={value!r} is not a budget: pass a number of USD, "
            "Budget(usd=..., tokens=..., requests=...) or a dict of those."
        )

    def describe(self) -> str:
        parts = []
        if self.usd is not None:
            parts.append(f"${self.usd:g}")
        if self.tokens is not None:
            parts.append(f"{self.tokens:,} tokens")
        if self.requests is not None:
            parts.append(f"{self.requests:,} requests")
        return ", ".join(parts) or "no limit"


class BudgetExhausted(AlambicError):
    """The next request could pass the run's budget: nothing more is sent."""


class RunStopping(BudgetExhausted):
    """The run is stopping (a first Ctrl-C): no new request is sent, like a spent budget."""


@dataclass
class Spend:
    """Requests and tokens spent and what they cost (``usd`` None: a price is unknown).
    ``cached_tokens`` counts the input tokens a provider served from its prompt cache."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: Decimal | None = Decimal(0)
    cached_tokens: int = 0

    def add(self, other: Spend, sign: int = 1) -> None:
        self.requests += sign * other.requests
        self.input_tokens += sign * other.input_tokens
        self.output_tokens += sign * other.output_tokens
        self.cached_tokens += sign * other.cached_tokens
        if self.usd is None or other.usd is None:
            self.usd = None
        else:
            self.usd += sign * other.usd

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        """``cached_tokens`` appears only when some input was served from a prompt cache."""
        out: dict[str, Any] = {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "usd": None if self.usd is None else float(self.usd),
        }
        if self.cached_tokens:
            out["cached_tokens"] = self.cached_tokens
        return out


def format_usd(value: float | Decimal | None) -> str:
    """``$0.000354`` (rounded to 1e-8 USD, no trailing zeros), ``unknown`` for ``None``:
    an unknown price is never shown as 0."""
    if value is None:
        return "unknown"
    amount = Decimal(str(value)).quantize(Decimal("1e-8")).normalize()
    return f"${amount:f}" if amount else "$0"


def amount_of(total: Spend, what: str) -> str:
    if what == "usd":
        return f"${total.usd:.6f}" if total.usd is not None else "unknown"
    if what == "tokens":
        return f"{total.tokens:,}"
    return f"{total.requests:,}"


__all__ = ["Budget", "BudgetExhausted", "RunStopping", "Spend", "amount_of", "format_usd"]
