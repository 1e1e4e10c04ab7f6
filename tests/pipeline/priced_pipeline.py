"""The small priced pipeline the budget tests and the notebook tests run against the OpenAI
test server (3 requests in flight, units of 4 rows, 4 output tokens at most)."""

from __future__ import annotations

from alambic.llms import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration


def priced_pipeline(url: str, n: int, name: str = "budget") -> Pipeline:
    """``LoadDataFromDicts`` (``"question i "`` three times, ``i < n``) >> ``TextGeneration("gen")``
    on ``OpenAILLM`` at ``url``, priced at 3 / 15 per million input / output tokens."""
    with Pipeline(name=name) as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i} " * 3} for i in range(n)])
        llm = OpenAILLM(
            model="test-model",
            base_url=url,
            max_concurrency=3,
            generation_kwargs={"max_new_tokens": 4},
            price_per_million_input=3,
            price_per_million_output=15,
        )
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=4)
    return pipeline
