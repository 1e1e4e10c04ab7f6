"""A real pipeline run in a subprocess by the crash/resume tests and benchmark W4.

``python resume_script.py --url URL --n N --out summary.json [options]`` runs::

    LoadDataFromDicts(name="load", data=[{"instruction": f"question {i}"} ...])
      >> TextGeneration(name="generate", llm=OpenAILLM(model="test-model", base_url=URL))
      >> KeepColumns(name="keep", columns=["instruction", "generation"])

against a test server, with the run store in ``$ALAMBIC_CACHE_DIR`` (the caller sets it), and
writes ``{"rows": [...], "status": ..., "seconds": ...}`` to ``--out`` once ``pipeline.run``
returns. The caller kills it with SIGKILL/SIGINT at chosen moments and starts it again.

Test hooks (environment variables), so a kill can land at an exact point that polling alone
would hit only by luck:

- ``RESUME_PAUSE_AFTER_PART=<marker path>``: right after the leaf's parquet part file is renamed
  into place (and before ``_COMPLETE`` is written), touch the marker and sleep for a long time.
- ``--inside-loop``: ``pipeline.run`` is called from inside a running event loop, as from a
  notebook cell (Jupyter runs cells inside its own loop).
- ``RESUME_PAUSE_BEFORE_PART=<marker path>``: right before the leaf's part file is written
  (every unit committed, nothing in ``data/``), touch the marker and sleep.

The hooks wrap ``ParquetRowWriter.flush`` in this process only; the library is not changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def _install_hooks() -> None:
    after = os.environ.get("RESUME_PAUSE_AFTER_PART")
    before = os.environ.get("RESUME_PAUSE_BEFORE_PART")
    if not after and not before:
        return
    from alambic.utils.parquet import ParquetRowWriter

    original = ParquetRowWriter.flush

    def flush(self: Any) -> None:
        has_rows = bool(getattr(self, "_buffered_rows", 0))
        if before and has_rows:
            Path(before).touch()
            time.sleep(3600)
        original(self)
        if after and has_rows:
            Path(after).touch()
            time.sleep(3600)

    ParquetRowWriter.flush = flush  # type: ignore[method-assign]


def build(args: argparse.Namespace) -> Any:
    from alambic.llms.openai import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import KeepColumns, LoadDataFromDicts
    from alambic.steps.tasks.text_generation import TextGeneration

    data = [{"instruction": f"question {i}"} for i in range(args.n)]
    if args.change is not None:
        data[args.change] = {"instruction": f"question {args.change} changed"}
    with Pipeline(name=args.name) as pipeline:
        load = LoadDataFromDicts(name="load", data=data, batch_size=args.gen_batch)
        generate = TextGeneration(
            name="generate",
            llm=OpenAILLM(
                model="test-model",
                base_url=args.url,
                api_key="not-needed",
                max_concurrency=args.max_concurrency,
            ),
            input_batch_size=args.batch,
            use_cache=not args.no_cache_generate,
        )
        keep = KeepColumns(name="keep", columns=["instruction", "generation"])
        load >> generate >> keep
    return pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", default="resume-test")
    parser.add_argument("--max-concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50, help="the task's input_batch_size")
    parser.add_argument("--gen-batch", type=int, default=50, help="the loader's batch_size")
    parser.add_argument("--change", type=int, default=None, help="change this input row")
    parser.add_argument("--no-cache-generate", action="store_true")
    parser.add_argument("--no-storage", action="store_true")
    parser.add_argument(
        "--inside-loop",
        action="store_true",
        help="call pipeline.run from inside a running event loop, as a notebook cell does",
    )
    args = parser.parse_args(argv)

    _install_hooks()
    pipeline = build(args)
    started = time.perf_counter()
    if args.inside_loop:

        async def cell() -> Any:
            # as Jupyter's kernel does around each cell (ipykernel's pre_handler_hook), a
            # Ctrl-C (the interrupt button) raises KeyboardInterrupt in the cell's code
            signal.signal(signal.SIGINT, signal.default_int_handler)
            return pipeline.run(show_progress=False, storage=not args.no_storage)

        distiset = asyncio.run(cell())
    else:
        distiset = pipeline.run(show_progress=False, storage=not args.no_storage)
    seconds = time.perf_counter() - started
    dataset = distiset["default"]["train"]
    rows = [{"instruction": r["instruction"], "generation": r["generation"]} for r in dataset]
    summary = {"rows": rows, "seconds": seconds, "columns": list(dataset.column_names)}
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(summary))
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
