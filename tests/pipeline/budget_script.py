"""A budgeted pipeline run in a subprocess by the budget kill test.

``python budget_script.py URL N K OUT`` runs ``LoadDataFromDicts(N rows) >> TextGeneration``
on the test server at URL with ``budget=Budget(requests=K)`` (4 requests in flight at most),
the run store in ``$ALAMBIC_CACHE_DIR``, and writes ``{"rows": ..., "budget": ...}`` to OUT.
"""

from __future__ import annotations

import json
import sys

from alambic.budget import Budget
from alambic.llms import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration


def main() -> None:
    url, n, k, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    with Pipeline(name="budget-kill") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(n)])
        llm = OpenAILLM(
            model="test-model",
            base_url=url,
            max_concurrency=4,
            generation_kwargs={"max_new_tokens": 8},
        )
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=5)
    distiset = pipeline.run(show_progress=False, budget=Budget(requests=k))
    rows = distiset["default"]["train"].to_list() if "default" in distiset else []
    summary = pipeline.last_summary or {}
    with open(out, "w") as f:
        json.dump({"rows": [r["generation"] for r in rows], "budget": summary.get("budget")}, f)


if __name__ == "__main__":
    main()
