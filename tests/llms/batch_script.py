"""A pipeline on OpenAILLM(use_batch_api=True), run in a subprocess by the batch kill tests.

``python batch_script.py URL N OUT`` runs ``LoadDataFromDicts(N rows) >> TextGeneration`` on
the batch test server at URL with the run store in ``$ALAMBIC_CACHE_DIR`` (jobs of 10
requests, collected for 50 ms, polled every 20-100 ms) and writes the rows as JSON to OUT.
"""

from __future__ import annotations

import json
import sys

from alambic.llms import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration


def main() -> None:
    url, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with Pipeline(name="batch-kill") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(n)])
        llm = OpenAILLM(
            model="gpt-4o-mini",
            base_url=url,
            use_batch_api=True,
            batch_max_requests=10,
            batch_collect_s=0.05,
            batch_poll_s=0.02,
            batch_poll_max_s=0.1,
            generation_kwargs={"max_new_tokens": 8},
        )
        load >> TextGeneration(name="gen", llm=llm)
    distiset = pipeline.run(show_progress=False)
    rows = distiset["default"]["train"].to_list()
    with open(out, "w") as f:
        json.dump(
            [{"instruction": r["instruction"], "generation": r["generation"]} for r in rows], f
        )


if __name__ == "__main__":
    main()
