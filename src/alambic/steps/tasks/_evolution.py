"""What the Evol-Instruct family shares: evolving a text several times, one LLM call per step.

An evolution chain rewrites a text (an instruction, or an answer) ``num_evolutions`` times,
each time with a mutation drawn from the task's ``mutations``. All rows of a batch advance
together, so each evolution step is one batched ``llm.generate`` call. The mutation of each
step is drawn from a generator seeded with ``seed``, the text and the step, so a rerun (or a
resumed run) sends the same prompts and hits the request cache.

A chain whose reply is empty, unchanged, or leaks words of the rewriting prompt is eliminated
(WizardLM's elimination step): its row keeps ``None`` outputs and the reason in
``alambic_metadata["error_<task name>"]``, like any failed row.
"""

from __future__ import annotations

import random
import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field, PositiveInt

from alambic.llms.typing import ChatType, GenerateOutput, GenerationError
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, preview
from alambic.steps.tasks.base import METADATA_COLUMN, GeneratorTask, Task
from alambic.steps.typing import Row, StepInput, StepOutput

__all__ = [
    "EvolutionChain",
    "EvolutionTask",
    "clean_rewrite",
    "pick_mutation",
    "rows_from_chains",
]

_LEAKS = re.compile(
    r"(?i)\b(?:original|given|rewritten|new|created)\s+(?:prompt|response|answer)\b|"
    r"#\s*(?:given|rewritten|created)\s+prompt\s*#"
)
_WRAPPERS = re.compile(r"(?is)^\s*<(prompt|response)>\s*(.*?)\s*(?:</\1>\s*)?$")
_LABEL = re.compile(
    r"(?i)^\s*(?:\*\*)?(?:rewritten|new|improved|evolved)\s+(?:prompt|response|answer)"
    r"(?:\*\*)?\s*:\s*(?:\*\*)?"
)


def pick_mutation(names: Sequence[str], seed: int, text: str, step: int, index: int = 0) -> str:
    """The mutation for one evolution step, the same on every run for the same inputs."""
    rng = random.Random(f"{seed}\x00{step}\x00{index}\x00{text}")
    return rng.choice(sorted(names))


def clean_rewrite(reply: str, previous: str, *, eliminate_unchanged: bool = True) -> str:
    """The rewritten text from a reply, or :class:`ReplyParseError` if it must be eliminated.

    Removes a ``<prompt>``/``<response>`` wrapper, a markdown fence around the whole reply and
    a leading "Rewritten prompt:" label; rejects empty replies, replies that leak the rewriting
    prompt's own words and, with ``eliminate_unchanged``, replies equal to ``previous``.
    """
    text = reply.strip()
    fenced = re.fullmatch(r"(?s)```[A-Za-z]*\n(.*?)\n?```", text)
    if fenced is not None:
        text = fenced.group(1).strip()
    wrapped = _WRAPPERS.match(text)
    if wrapped is not None:
        text = wrapped.group(2).strip()
    text = _LABEL.sub("", text).strip()
    if not text:
        raise ReplyParseError("eliminated: the rewrite is empty")
    if eliminate_unchanged and _same(text, previous):
        raise ReplyParseError(f"eliminated: the rewrite is the text unchanged: {preview(text)!r}")
    leak = _LEAKS.search(text)
    if leak is not None:
        raise ReplyParseError(
            f"eliminated: the rewrite copies the rewriting prompt's words ({leak.group(0)!r}): "
            f"{preview(text)!r}"
        )
    return text


def _same(text: str, previous: str) -> bool:
    return " ".join(text.split()).casefold() == " ".join(previous.split()).casefold()


@dataclass
class EvolutionChain:
    """One row's chain: the texts so far, the last request and reply, tokens, and failure."""

    row: Row
    index: int
    texts: list[str]
    error: GenerationError | None = None
    raw_input: ChatType | str | None = None
    raw_output: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def current(self) -> str:
        return self.texts[-1]

    def fail(self, error_type: str, kind: str, message: str) -> None:
        self.error = {"type": error_type, "kind": kind, "message": message[:2000]}

    def record(self, prompt: ChatType | str, out: GenerateOutput) -> str | None:
        """Keep the request, reply and tokens; the reply text, or ``None`` after a failure."""
        text = out["generations"][0]
        errors = out.get("errors") or [None]
        self.raw_input, self.raw_output = prompt, text
        stats = out["statistics"]
        self.input_tokens += stats["input_tokens"][0] or 0
        self.output_tokens += stats["output_tokens"][0] or 0
        if errors[0] is not None:
            self.error = errors[0]
            return None
        if text is None:
            self.fail("EmptyReply", "invalid_response", "the LLM returned no text")
        return text


def check_mutation_templates(
    owner: str, templates: dict[str, str] | None, placeholders: Sequence[str]
) -> dict[str, str] | None:
    """Refuse distilabel-style ``mutation_templates`` that are empty or lack a placeholder."""
    if templates is None:
        return None
    if not templates:
        raise ValueError(
            f"{owner}: mutation_templates is empty. Leave it out for the default mutations, "
            "or give {name: prompt} with " + " and ".join(placeholders) + " in each prompt."
        )
    for name, template in templates.items():
        missing = [p for p in placeholders if p not in template]
        if missing:
            raise ValueError(
                f"{owner}: mutation_templates[{name!r}] lacks {missing}, where the text to "
                f"rewrite goes: {template[:80]!r}. Put {' and '.join(placeholders)} in it "
                "(distilabel's placeholders)."
            )
    return templates


def fill_mutation_template(template: str, values: dict[str, str]) -> ChatType:
    """A distilabel-style mutation template with its ``<PLACEHOLDER>``s replaced, as a chat."""
    content = template
    for placeholder, value in values.items():
        content = content.replace(placeholder, value)
    return [{"role": "user", "content": content}]


class EvolutionTask(LenientFormatOutput, Task):
    """Base of tasks that rewrite one column of each row ``num_evolutions`` times."""

    num_evolutions: PositiveInt = Field(default=1, description="Rewrites per chain.")
    store_evolutions: bool = Field(
        default=False, description="Output every intermediate rewrite, not only the last."
    )
    seed: int = Field(default=42, description="Seed of the mutation choices.")
    eliminate_unchanged: bool = Field(
        default=False,
        description="Fail a chain whose rewrite is the text unchanged (distilabel keeps it).",
    )

    default_mutations: ClassVar[dict[str, str]] = {}

    @property
    @abstractmethod
    def source_column(self) -> str:
        """The column whose text is evolved."""

    @abstractmethod
    def mutation_prompt(self, mutation: str, row: Row, text: str) -> ChatType:
        """The request that applies ``mutation`` to ``text`` (the current version)."""

    @abstractmethod
    def chain_values(self, chain: EvolutionChain) -> dict[str, Any]:
        """The output columns of a chain that succeeded."""

    @property
    def mutation_names(self) -> list[str]:
        mutations: dict[str, str] = (
            getattr(self, "mutation_templates", None)
            or getattr(self, "mutations", None)
            or self.default_mutations
        )
        return sorted(mutations)

    def mutation_for(self, text: str, step: int, index: int = 0) -> str:
        return pick_mutation(self.mutation_names, self.seed, text, step, index)

    def format_input(self, input: dict[str, Any]) -> ChatType:
        """The first evolution request for a row (what ``dry_run`` shows)."""
        text = self.source_text(input)
        return self.mutation_prompt(self.mutation_for(text, 0), input, text)

    def empty_output(self, input: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"rewrite": None}

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One rewrite reply, cleaned as every evolution step cleans it (:func:`clean_rewrite`)."""
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        previous = self.source_text(input) if input else ""
        return {
            "rewrite": clean_rewrite(output, previous, eliminate_unchanged=self.eliminate_unchanged)
        }

    def source_text(self, row: dict[str, Any]) -> str:
        value = row.get(self.source_column)
        if not isinstance(value, str):
            from alambic.errors import ColumnTypeError

            raise ColumnTypeError(
                f"Step {self.name!r} ({type(self).__name__}): column {self.source_column!r} "
                f"must hold text, got {type(value).__name__}."
            )
        return value

    # -- running chains ------------------------------------------------------------------

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        chains: list[EvolutionChain] = []
        for row in inputs:
            for index in range(self.num_generations or 1):
                chain = EvolutionChain(row=row, index=index, texts=[])
                try:
                    chain.texts.append(self.source_text(row))
                except ValueError as exc:
                    chain.fail(type(exc).__name__, "format_input", str(exc))
                chains.append(chain)
        self.evolve(chains)
        self.finish(chains)
        yield self.build_chain_rows(inputs, chains)

    def evolve(self, chains: list[EvolutionChain]) -> None:
        """Run ``num_evolutions`` batched rewriting steps over the live chains."""
        for step in range(self.num_evolutions):
            live: list[EvolutionChain] = []
            prompts: list[ChatType] = []
            for chain in chains:
                if chain.error is not None:
                    continue
                mutation = self.mutation_for(chain.texts[0], step, chain.index)
                try:
                    prompts.append(self.mutation_prompt(mutation, chain.row, chain.current))
                except ValueError as exc:  # a bad column: this row fails, the batch goes on
                    chain.fail(type(exc).__name__, "format_input", str(exc))
                    continue
                live.append(chain)
            if not live:
                return
            outputs = self.llm.generate(prompts, num_generations=1)
            for chain, prompt, out in zip(live, prompts, outputs, strict=True):
                text = chain.record(prompt, out)
                if text is None:
                    continue
                try:
                    rewrite = clean_rewrite(
                        text, chain.current, eliminate_unchanged=self.eliminate_unchanged
                    )
                except ReplyParseError as exc:
                    chain.fail("ReplyParseError", "format_output", f"step {step + 1}: {exc}")
                    continue
                chain.texts.append(rewrite)

    def finish(self, chains: list[EvolutionChain]) -> None:
        """Work after the evolutions (answers, for example); by default nothing."""

    def build_chain_rows(self, inputs: Sequence[Row], chains: list[EvolutionChain]) -> list[Row]:
        return rows_from_chains(self, chains, self.chain_values)


def rows_from_chains(
    task: Task | GeneratorTask,
    chains: list[EvolutionChain],
    values_of: Callable[[EvolutionChain], dict[str, Any]],
    always: Callable[[EvolutionChain], dict[str, Any]] | None = None,
) -> list[Row]:
    """Output rows for chains, shaped like the Task base's rows (metadata, grouping, failures).

    ``chains`` hold ``num_generations`` consecutive chains per input row; ``values_of`` gives
    the output columns of a chain that did not fail, ``always`` those of every chain.
    """
    columns = [c for c in task.own_outputs() if c != "model_name"]
    name = task.name
    per_chain: list[tuple[Row, dict[str, Any], dict[str, Any]]] = []
    for chain in chains:
        values: dict[str, Any] = dict.fromkeys(columns)
        if chain.error is None:
            values.update(values_of(chain))
        if always is not None:
            values.update(always(chain))
        meta: dict[str, Any] = {}
        if task.add_raw_output:
            meta[f"raw_output_{name}"] = chain.raw_output
        if task.add_raw_input:
            meta[f"raw_input_{name}"] = chain.raw_input
        meta[f"statistics_{name}"] = {
            "input_tokens": chain.input_tokens,
            "output_tokens": chain.output_tokens,
        }
        if chain.error is not None:
            meta[f"error_{name}"] = dict(chain.error)
            task._record_failure(chain.error)
        per_chain.append((chain.row, values, meta))
    rows: list[Row] = []
    model_name = task.llm.model_name
    n = task.num_generations or 1
    if task.group_generations:
        for start in range(0, len(per_chain), n):
            group = per_chain[start : start + n]
            row = group[0][0]
            new: Row = {k: v for k, v in row.items() if k != METADATA_COLUMN}
            for column in columns:
                new[column] = [values[column] for _, values, _ in group]
            new[METADATA_COLUMN] = [_merged(row, meta) for _, _, meta in group]
            new["model_name"] = model_name
            rows.append(new)
        return rows
    for row, values, meta in per_chain:
        new = {k: v for k, v in row.items() if k != METADATA_COLUMN}
        new.update(values)
        new[METADATA_COLUMN] = _merged(row, meta)
        new["model_name"] = model_name
        rows.append(new)
    return rows


def _merged(row: Row, meta: dict[str, Any]) -> dict[str, Any]:
    existing = row.get(METADATA_COLUMN)
    return {**existing, **meta} if isinstance(existing, dict) else meta
