"""Building, merging and caching :class:`~alambic.llms.typing.GenerateOutput` records: what
the LLM base classes share and providers use to report failures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from alambic.errors import ErrorKind, LLMRequestError, error_entry
from alambic.llms.cache import CachedGeneration, cached_generation, request_key
from alambic.llms.structured import StructuredSpec, validate_reply
from alambic.llms.typing import (
    ChatType,
    FormattedInput,
    GenerateOutput,
    GenerationError,
    StructuredOutputSpec,
)

RAW_COMPLETION_UNSUPPORTED = (
    "{name} only accepts chat messages, but raw completions were asked for (Magpie needs "
    "them). Use TransformersLLM, vLLM, LlamaCppLLM, or OpenAILLM against a server with a "
    "/v1/completions endpoint."
)


def split_input(input: FormattedInput) -> tuple[ChatType, StructuredOutputSpec | None]:
    """Separate the conversation from its optional structured-output schema."""
    if isinstance(input, tuple):
        return input[0], input[1]
    return input, None


def engine_generation_kwargs(
    generation_kwargs: dict[str, Any],
    *,
    engine: str,
    renamed: dict[str, str],
    allowed: set[str],
) -> dict[str, Any]:
    """A local engine's sampling arguments from alambic's generation settings.

    Settings are renamed to the engine's names (``max_new_tokens`` -> ``max_tokens``, ...),
    ``None`` values dropped, ``do_sample=False`` becomes greedy (``temperature=0``), a single
    ``stop`` string a list, and ``max_tokens`` defaults to 128. A setting the engine does not
    know is an error listing the known ones, rather than a silently ignored value.
    """
    kwargs = {renamed.get(k, k): v for k, v in generation_kwargs.items() if v is not None}
    if kwargs.pop("do_sample", True) is False:
        kwargs["temperature"] = 0.0
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(
            f"{engine} got unknown generation settings {sorted(unknown)}; known: "
            f"{sorted(allowed | set(renamed) | {'do_sample'})}."
        )
    if isinstance(kwargs.get("stop"), str):
        kwargs["stop"] = [kwargs["stop"]]
    kwargs.setdefault("max_tokens", 128)
    return kwargs


def failed_output(num_generations: int, error: BaseException) -> GenerateOutput:
    """A ``GenerateOutput`` whose every generation failed with ``error``."""
    info = error_info(error)
    return {
        "generations": [None] * num_generations,
        "statistics": {
            "input_tokens": [None] * num_generations,
            "output_tokens": [None] * num_generations,
        },
        "errors": [info] * num_generations,
    }


def error_info(error: BaseException) -> GenerationError:
    """The error entry of a failed generation; its message is redacted of keys."""
    kind = error.kind if isinstance(error, LLMRequestError) else ErrorKind.UNKNOWN
    cause = error.__cause__ if isinstance(error, LLMRequestError) and error.__cause__ else error
    return error_entry(kind, error, type=cause)


def validate_slots(
    out: GenerateOutput,
    spec: StructuredSpec,
    slots: Sequence[int] | range,
    index: int,
    reasons: dict[tuple[int, int], str],
) -> None:
    """Validate generations ``slots`` of ``out`` in place: valid ones become their JSON text,
    invalid ones are added to ``reasons`` under ``(index, slot)``. Failed requests stay failed."""
    errors = out.get("errors")
    for j in slots:
        if errors is not None and errors[j] is not None:
            continue
        text, reason = validate_reply(out["generations"][j], spec)
        if reason is None:
            out["generations"][j] = text
        else:
            reasons[(index, j)] = reason + f" (reply: {str(out['generations'][j])[:300]!r})"


def copy_slot(src: GenerateOutput, k: int, dst: GenerateOutput, j: int) -> None:
    """Put generation ``k`` of ``src`` (text, tokens, error) in slot ``j`` of ``dst``."""
    dst["generations"][j] = src["generations"][k] if k < len(src["generations"]) else None
    for key in ("input_tokens", "output_tokens"):
        values = src["statistics"][key]  # type: ignore[literal-required]
        dst["statistics"][key][j] = values[k] if k < len(values) else None  # type: ignore[literal-required]
    src_errors = src.get("errors")
    error = src_errors[k] if src_errors is not None and k < len(src_errors) else None
    if error is not None or dst.get("errors") is not None:
        dst.setdefault("errors", [None] * len(dst["generations"]))[j] = error


def fail_slot(out: GenerateOutput, j: int, reason: str) -> None:
    """Mark generation ``j`` failed: its reply never matched the schema."""
    out["generations"][j] = None
    errors = out.setdefault("errors", [None] * len(out["generations"]))
    errors[j] = error_entry(ErrorKind.STRUCTURED_OUTPUT, reason, type="StructuredOutputError")


def fill_slots(
    slots: list[int],
    out: GenerateOutput,
    texts: list[str | None],
    in_tok: list[int | None],
    out_tok: list[int | None],
    errors: list[GenerationError | None],
    reasonings: list[str | None] | None = None,
) -> None:
    """Copy the generations of ``out`` into ``slots`` of the lists; slots ``out`` has no
    generation for fail as ``invalid_response``. ``reasonings`` (optional) gets the
    backend's reasoning per generation, when it returned one."""
    errs = out.get("errors") or [None] * len(out["generations"])
    thoughts = out.get("reasonings") or []
    stats = out["statistics"]
    for k, slot in enumerate(slots):
        if k >= len(out["generations"]):
            # built only when needed: error_entry redacts, which is not free on every reply
            errors[slot] = error_entry(
                ErrorKind.INVALID_RESPONSE,
                "the reply held fewer generations than asked for",
                type="InvalidResponseError",
            )
            continue
        texts[slot] = out["generations"][k]
        in_tok[slot] = stats["input_tokens"][k]
        out_tok[slot] = stats["output_tokens"][k]
        errors[slot] = errs[k]
        if reasonings is not None and k < len(thoughts):
            reasonings[slot] = thoughts[k]


def generate_structured(
    structured_request: Callable[..., FormattedInput],
    generate: Callable[[list[FormattedInput], int], list[GenerateOutput]],
    inputs: list[FormattedInput],
    specs: list[StructuredSpec | None],
    num_generations: int,
    retries: int,
) -> list[GenerateOutput]:
    """Batch generation with validation and batched re-asks of invalid replies (the
    synchronous engines' path; ``generate(batch, n)`` goes through the request cache)."""
    messages = [split_input(i)[0] for i in inputs]
    requests = [
        structured_request(m, s) if s is not None else m
        for m, s in zip(messages, specs, strict=True)
    ]
    outputs = generate(requests, num_generations)
    reasons: dict[tuple[int, int], str] = {}
    for i, (out, spec) in enumerate(zip(outputs, specs, strict=True)):
        if spec is not None:
            validate_slots(out, spec, range(len(out["generations"])), i, reasons)
    for _ in range(retries):
        if not reasons:
            break
        slots = list(reasons)
        retry = [structured_request(messages[i], specs[i], reasons[(i, j)]) for i, j in slots]
        again = generate(retry, 1)
        reasons = {}
        for (i, j), out in zip(slots, again, strict=True):
            copy_slot(out, 0, outputs[i], j)
            validate_slots(outputs[i], specs[i], [j], i, reasons)  # type: ignore[arg-type]
    for (i, j), reason in reasons.items():
        fail_slot(outputs[i], j, reason)
    return outputs


def to_cache(base: str, out: GenerateOutput) -> list[tuple[str, CachedGeneration]]:
    """The cache entries of the successful generations of ``out``."""
    errors = out.get("errors") or [None] * len(out["generations"])
    reasonings = out.get("reasonings") or [None] * len(out["generations"])
    stats = out["statistics"]
    return [
        (
            request_key(base, j),
            cached_generation(
                text,
                stats["input_tokens"][j],
                stats["output_tokens"][j],
                reasonings[j] if j < len(reasonings) else None,
            ),
        )
        for j, text in enumerate(out["generations"])
        if errors[j] is None
    ]


def from_cache(found: Sequence[CachedGeneration | None]) -> GenerateOutput:
    """A ``GenerateOutput`` from cached generations (every one present)."""
    gens = [f for f in found if f is not None]
    out: GenerateOutput = {
        "generations": [g["text"] for g in gens],
        "statistics": {
            "input_tokens": [g["input_tokens"] for g in gens],
            "output_tokens": [g["output_tokens"] for g in gens],
        },
    }
    reasonings = [g.get("reasoning") for g in gens]
    if any(r is not None for r in reasonings):
        out["reasonings"] = reasonings
    return out


__all__ = [
    "RAW_COMPLETION_UNSUPPORTED",
    "copy_slot",
    "engine_generation_kwargs",
    "error_info",
    "fail_slot",
    "failed_output",
    "fill_slots",
    "from_cache",
    "generate_structured",
    "split_input",
    "to_cache",
    "validate_slots",
]
