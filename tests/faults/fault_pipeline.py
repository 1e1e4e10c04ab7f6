"""The pipeline of the fault matrix, run in-process (tests) or as a subprocess (SIGKILL tests,
``benchmarks/faults.py``).

``python tests/faults/fault_pipeline.py --url URL --rows N --out result.json [options]`` runs::

    LoadDataFromDicts(data=[{"instruction": "question <i>"}...])
      >> TextGeneration(llm=OpenAILLM(model="test-model", base_url=URL, ...))

with the run store and request cache in ``$ALAMBIC_CACHE_DIR``, and writes
``{"rows": [{"instruction", "generation", "error_kind", "error"}], "error": None | str,
"error_type": None | str}`` to ``--out`` (an exception that stops the run is recorded, not
raised, so the caller can check its message).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def run_pipeline(
    url: str,
    rows: int,
    *,
    name: str = "faults",
    api_key: str | None = "not-needed",
    max_retries: int = 6,
    timeout: float = 120.0,
    max_concurrency: int = 16,
    batch: int = 50,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Run the fault pipeline; return its rows and the error that stopped it, if any."""
    from alambic.errors import AlambicError
    from alambic.llms.openai import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks.text_generation import TextGeneration

    llm = OpenAILLM(
        model="test-model",
        base_url=url,
        api_key=api_key,
        max_retries=max_retries,
        timeout=timeout,
        max_concurrency=max_concurrency,
    )
    with Pipeline(name=name) as pipeline:
        load = LoadDataFromDicts(
            name="load",
            data=[{"instruction": f"question {i}"} for i in range(rows)],
            batch_size=batch,
        )
        load >> TextGeneration(name="generate", llm=llm, input_batch_size=batch)
    llm.load()
    llm.scheduler.limits.backoff_base = 0.02
    llm.scheduler.limits.backoff_max = 0.5
    try:
        distiset = pipeline.run(show_progress=False, use_cache=use_cache)
    except AlambicError as exc:
        return {"rows": [], "error": str(exc), "error_type": type(exc).__name__}
    data = distiset["default"]["train"].to_list()
    out = []
    for row in data:
        error = (row.get("alambic_metadata") or {}).get("error_generate") or {}
        out.append(
            {
                "instruction": row["instruction"],
                "generation": row.get("generation"),
                "error_kind": error.get("kind"),
                "error": error.get("message"),
            }
        )
    return {"rows": out, "error": None, "error_type": None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="faults")
    p.add_argument("--api-key", default="not-needed")
    p.add_argument("--max-retries", type=int, default=6)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--max-concurrency", type=int, default=16)
    p.add_argument("--batch", type=int, default=50)
    args = p.parse_args(argv)
    result = run_pipeline(
        args.url,
        args.rows,
        name=args.name,
        api_key=args.api_key,
        max_retries=args.max_retries,
        timeout=args.timeout,
        max_concurrency=args.max_concurrency,
        batch=args.batch,
    )
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
