"""W8: a local engine alone against the same engine inside a one-task pipeline.

The tiny chat model of ``alambic.testing.tiny_model`` on the CPU, 1,024 prompts, 32 per batch,
64 new tokens each (``min_new_tokens`` = ``max_new_tokens``, greedy). Prints tokens/s of

- the engine alone: ``TransformersLLM.generate`` on the batches of 32, one after the other;
- the pipeline: ``LoadDataFromDicts(batch_size=32) >> TextGeneration(input_batch_size=32)``,
  request cache off, run store on (as users run it);

and their ratio (target >= 90%). Model loading is timed apart and left out of both. The first
pipeline run of the process also imports pyarrow and datasets (to write and return the dataset):
it is printed, and the median is over every run.

Run: ``PYTHONPATH=src python benchmarks/w8_local_engine.py [--prompts 1024] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import median, peak_rss_mb

GENERATION = {"max_new_tokens": 64, "min_new_tokens": 64, "do_sample": False}


def _prompts(count: int) -> list[str]:
    return [f"Write a short note about topic number {i} and why it matters." for i in range(count)]


def engine_alone(model: str, prompts: list[str], batch: int) -> tuple[float, int, float]:
    from alambic.llms.transformers import TransformersLLM

    llm = TransformersLLM(model=model, batch_size=batch, generation_kwargs=GENERATION)
    start = time.perf_counter()
    llm.load()
    load_s = time.perf_counter() - start
    tokens = 0
    start = time.perf_counter()
    for i in range(0, len(prompts), batch):
        chat: list[Any] = [[{"role": "user", "content": p}] for p in prompts[i : i + batch]]
        for out in llm.generate(chat):
            tokens += sum(t or 0 for t in out["statistics"]["output_tokens"])
    elapsed = time.perf_counter() - start
    llm.unload()
    return elapsed, tokens, load_s


def pipeline_run(model: str, prompts: list[str], batch: int) -> tuple[float, int, float]:
    from alambic.llms.transformers import TransformersLLM
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks.text_generation import TextGeneration

    # batch_size left at its default: the engine gets the task's batches whole
    llm = TransformersLLM(model=model, generation_kwargs=GENERATION)
    with Pipeline(name="bench-w8", cache_dir=tempfile.mkdtemp(prefix="alambic-w8-")) as p:
        load = LoadDataFromDicts(data=[{"instruction": x} for x in prompts], batch_size=batch)
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=batch)
    loaded: list[float] = []
    original = llm.load

    def timed_load() -> None:
        start = time.perf_counter()
        original()
        loaded.append(time.perf_counter() - start)

    object.__setattr__(llm, "load", timed_load)
    start = time.perf_counter()
    distiset = p.run(use_cache=False, show_progress=False)
    elapsed = time.perf_counter() - start - sum(loaded)
    meta = distiset["default"]["train"]["alambic_metadata"]
    tokens = sum((m.get("statistics_gen") or {}).get("output_tokens") or 0 for m in meta)
    return elapsed, tokens, sum(loaded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 by default: on a shared, oversubscribed machine two "
        "spinning OpenMP threads make every figure swing by 10x)",
    )
    args = parser.parse_args(argv)
    os.environ["ALAMBIC_REQUEST_CACHE"] = "0"
    import torch

    torch.set_num_threads(args.torch_threads)
    from alambic.testing.tiny_model import build_tiny_chat_model

    model = str(build_tiny_chat_model(Path(tempfile.gettempdir()) / "alambic-w8-tiny-chat"))
    prompts = _prompts(args.prompts)
    alone: list[float] = []
    inside: list[float] = []
    loads: list[float] = []
    for i in range(args.repeat):  # interleaved, so both see the same machine load
        elapsed, tokens, load_s = engine_alone(model, prompts, args.batch)
        alone.append(tokens / elapsed)
        loads.append(load_s)
        elapsed_p, tokens_p, load_p = pipeline_run(model, prompts, args.batch)
        inside.append(tokens_p / elapsed_p)
        print(
            f"  run {i + 1}: engine {tokens / elapsed:,.0f} tok/s ({tokens} tokens, "
            f"{elapsed:.1f} s); pipeline {tokens_p / elapsed_p:,.0f} tok/s ({tokens_p} tokens, "
            f"{elapsed_p:.1f} s without its {load_p:.2f} s load)"
        )
    a, b = median(alone), median(inside)
    print(f"W8: tiny chat model, {args.prompts} prompts, {args.batch} per batch, 64 new tokens")
    print(f"  engine alone      : {a:,.0f} tokens/s (median of {args.repeat})")
    print(f"  one-task pipeline : {b:,.0f} tokens/s")
    print(f"  ratio             : {b / a:.0%} (target >= 90%)")
    print(f"  model load        : {median(loads):.2f} s (not counted above)")
    print(f"  peak RSS          : {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
