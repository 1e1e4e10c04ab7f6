"""Batch LLMs of each provider on the provider batch test server; run as a script by the
batch kill tests.

``python provider_batch_script.py PROVIDER URL N OUT`` runs ``LoadDataFromDicts(N rows) >>
TextGeneration`` on that provider's batch API at URL with the run store in
``$ALAMBIC_CACHE_DIR`` (jobs of 10 requests, collected for 50 ms, polled every 20-100 ms)
and writes the rows as JSON to OUT.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from alambic.llms import AnthropicLLM, MistralLLM, VertexAILLM
from alambic.llms.batch.llm import BatchAPILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration

PROVIDERS = ("anthropic", "mistral", "gemini")
FAST = {"batch_collect_s": 0.05, "batch_poll_s": 0.02, "batch_poll_max_s": 0.1}


def make_llm(provider: str, url: str, **settings: Any) -> BatchAPILLM:
    """The provider's LLM with ``use_batch_api=True`` pointed at the test server."""
    settings = {**FAST, "generation_kwargs": {"max_new_tokens": 8}, **settings}
    if provider == "anthropic":
        return AnthropicLLM(model="claude-test", base_url=url, use_batch_api=True, **settings)
    if provider == "mistral":
        return MistralLLM(model="mistral-test", base_url=url, use_batch_api=True, **settings)
    if provider == "gemini":
        return VertexAILLM(model="gemini-test", base_url=url, use_batch_api=True, **settings)
    raise ValueError(f"no provider {provider!r}; known: {PROVIDERS}")


def main() -> None:
    provider, url, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with Pipeline(name=f"batch-kill-{provider}") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(n)])
        llm = make_llm(provider, url, batch_max_requests=10)
        load >> TextGeneration(name="gen", llm=llm)
    rows = pipeline.run(show_progress=False)["default"]["train"].to_list()
    with open(out, "w") as f:
        json.dump(
            [{"instruction": r["instruction"], "generation": r["generation"]} for r in rows], f
        )


if __name__ == "__main__":
    main()
