"""Prices: the genai-prices table, overrides on the LLM or registered, unknown said so."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from alambic.llms import OpenAILLM
from alambic.llms.pricing import pricing_for, register_price, unregister_price

pytest.importorskip("genai_prices")


def test_table_price_for_openai_model() -> None:
    pricing = pricing_for(OpenAILLM(model="gpt-4o-mini"))
    assert pricing.kind == "table"
    assert pricing.input_per_million == Decimal("0.15")
    assert pricing.output_per_million == Decimal("0.6")
    assert pricing.cost(1_000_000, 1_000_000) == Decimal("0.75")
    assert pricing.cost(1_000_000, 1_000_000, batch=True) == Decimal("0.375")
    assert "genai-prices" in pricing.describe()


def test_override_on_the_llm_wins_over_the_table() -> None:
    llm = OpenAILLM(model="gpt-4o-mini", price_per_million_input=2, price_per_million_output=8)
    pricing = pricing_for(llm)
    assert pricing.kind == "override"
    assert pricing.cost(1_000, 500) == Decimal("0.006")  # (2*1000 + 8*500) / 1e6
    assert pricing.cost(1_000, 500, batch=True) == Decimal("0.003")


def test_only_one_override_is_an_error_naming_both() -> None:
    llm = OpenAILLM(model="gpt-4o-mini", price_per_million_input=2)
    with pytest.raises(ValueError, match="price_per_million_output"):
        pricing_for(llm)


def test_registered_entry_prices_a_private_deployment() -> None:
    llm = OpenAILLM(model="our-finetune", base_url="http://127.0.0.1:9/v1")
    assert pricing_for(llm).kind == "unknown"
    register_price(
        "our-finetune", input_per_million="0.5", output_per_million=1, batch_discount=0.6
    )
    try:
        pricing = pricing_for(llm)
        assert pricing.kind == "override"
        assert pricing.cost(2_000_000, 1_000_000) == Decimal("2")
        assert pricing.cost(2_000_000, 1_000_000, batch=True) == Decimal("1.2")
    finally:
        unregister_price("our-finetune")
    assert pricing_for(llm).kind == "unknown"


def test_custom_endpoint_is_unknown_never_zero() -> None:
    llm = OpenAILLM(model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
    pricing = pricing_for(llm)
    assert pricing.kind == "unknown"
    assert pricing.cost(10, 10) is None
    text = pricing.describe()
    assert "http://127.0.0.1:9/v1" in text
    assert "price_per_million_input" in text


def test_model_missing_from_the_table_is_unknown() -> None:
    pricing = pricing_for(OpenAILLM(model="no-such-model-xyz"))
    assert pricing.kind == "unknown"
    assert "does not know" in pricing.source
    assert pricing.cost(1, 1) is None


def test_local_engine_costs_nothing_and_says_so(tiny_model_path: Path) -> None:
    from alambic.llms import TransformersLLM

    pricing = pricing_for(TransformersLLM(model=str(tiny_model_path)))
    assert pricing.kind == "local"
    assert pricing.cost(1000, 1000) == Decimal(0)
    assert "runs in this process" in pricing.describe()


def test_prices_change_neither_cache_keys_nor_step_signatures() -> None:
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration

    def signature(**prices: float) -> tuple[object, str]:
        llm = OpenAILLM(model="gpt-4o-mini", **prices)
        with Pipeline(name="p") as pipeline:
            LoadDataFromDicts(data=[{"instruction": "x"}]) >> TextGeneration(name="t", llm=llm)
        return llm.cache_identity(), pipeline.step_signatures()["t"]

    assert signature() == signature(price_per_million_input=1, price_per_million_output=2)
