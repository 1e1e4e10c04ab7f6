"""Training data for text-embedding models, written by an LLM.

Wang et al., 2024, "Improving Text Embeddings with Large Language Models"
(https://arxiv.org/abs/2401.00368). A first prompt brainstorms embedding tasks
(:class:`EmbeddingTaskGenerator`); a second writes one JSON example for a task, with the
attributes (query type and length, clarity, difficulty, language...) drawn at random for
diversity: retrieval triples (:class:`GenerateTextRetrievalData`), short and long matching
pairs, classification examples with a misleading label, and sentence triplets within one
language (:class:`MonolingualTripletGenerator`) or across two
(:class:`BitextRetrievalGenerator`).

Every reply must be a JSON object (fences and prose around it are fine) with each field as
non-empty text; otherwise the row fails with the reason. Attributes left ``None`` are drawn
per row from the paper's choices, with ``seed``, so a rerun draws the same.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

from pydantic import Field

from alambic.llms.typing import ChatType
from alambic.steps.checks import require_text
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, extract_json, extract_json_object, preview
from alambic.steps.tasks.base import GeneratorTask, Task
from alambic.steps.typing import GeneratorOutput, StepColumns

_T = "improving_text_embeddings"

QUERY_TYPES = ["extremely long-tail", "long-tail", "common"]
QUERY_LENGTHS = ["less than 5 words", "5 to 15 words", "at least 10 words"]
DIFFICULTIES = ["high school", "college", "PhD"]
CLARITIES = ["clear", "understandable with some effort", "ambiguous"]
NUM_WORDS = [50, 100, 200, 300, 400, 500]
UNITS = ["sentence", "phrase", "passage"]
TRIPLET_DIFFICULTIES = ["elementary school", "high school", "college"]
HIGH_SCORES = ["4", "4.5", "5"]
LOW_SCORES = ["2.5", "3", "3.5"]


def _fields(output: str | None, names: tuple[str, ...]) -> dict[str, str]:
    if output is None:
        raise ReplyParseError("the LLM returned no text")
    data = extract_json_object(output)
    values: dict[str, str] = {}
    for name in names:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ReplyParseError(
                f"the reply's JSON has no text field {name!r} (keys: {sorted(data)}): "
                f"{preview(output)!r}"
            )
        values[name] = value.strip()
    return values


class _ExampleTask(LenientFormatOutput, Task):
    """A task that writes one JSON example for the ``task`` column."""

    language: str = Field(default="English", description="Language of the example.")
    seed: int = Field(default=42, description="Seed of the attributes drawn per row.")

    _template_name: ClassVar[str]

    def _template_path(self) -> tuple[str, str] | None:
        return (_T, self._template_name)

    _fields: ClassVar[tuple[str, ...]]

    @property
    def inputs(self) -> StepColumns:
        return ["task"]

    @property
    def outputs(self) -> StepColumns:
        return [*self._fields, "model_name"]

    def _rng(self, task: str) -> random.Random:
        return random.Random(f"{self.seed}:{task}")

    def attributes(self, task: str) -> dict[str, Any]:
        """The prompt's attributes for ``task`` (drawn where not set)."""
        return {"language": self.language}

    def format_input(self, input: dict[str, Any]) -> ChatType:
        task = require_text(self.name, "task", input.get("task"))
        content = self.render_prompt(_T, self._template_name, task=task, **self.attributes(task))
        return [{"role": "user", "content": content}]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return _fields(output, self._fields)


class GenerateTextRetrievalData(_ExampleTask):
    """A retrieval triple for ``task``: ``user_query``, ``positive_document``,
    ``hard_negative_document``."""

    query_type: str | None = Field(default=None, description=f"One of {QUERY_TYPES}.")
    query_length: str | None = Field(default=None, description=f"One of {QUERY_LENGTHS}.")
    difficulty: str | None = Field(default=None, description=f"One of {DIFFICULTIES}.")
    clarity: str | None = Field(default=None, description=f"One of {CLARITIES}.")
    num_words: int | None = Field(default=None, description=f"One of {NUM_WORDS}.")

    _template_name: ClassVar[str] = "text-retrieval"
    _fields: ClassVar[tuple[str, ...]] = (
        "user_query",
        "positive_document",
        "hard_negative_document",
    )

    def attributes(self, task: str) -> dict[str, Any]:
        rng = self._rng(task)
        return {
            "language": self.language,
            "query_type": self.query_type or rng.choice(QUERY_TYPES),
            "query_length": self.query_length or rng.choice(QUERY_LENGTHS),
            "difficulty": self.difficulty or rng.choice(DIFFICULTIES),
            "clarity": self.clarity or rng.choice(CLARITIES),
            "num_words": self.num_words or rng.choice(NUM_WORDS),
        }


class GenerateShortTextMatchingData(_ExampleTask):
    """A short matching pair for ``task``: ``input`` and ``positive_document``."""

    _template_name: ClassVar[str] = "short-text-matching"
    _fields: ClassVar[tuple[str, ...]] = ("input", "positive_document")


class GenerateLongTextMatchingData(_ExampleTask):
    """A long matching pair for ``task``: ``input`` and ``positive_document``."""

    _template_name: ClassVar[str] = "long-text-matching"
    _fields: ClassVar[tuple[str, ...]] = ("input", "positive_document")


class GenerateTextClassificationData(_ExampleTask):
    """A classification example for ``task``: ``input_text``, ``label``,
    ``misleading_label``."""

    difficulty: str | None = Field(default=None, description=f"One of {DIFFICULTIES}.")
    clarity: str | None = Field(default=None, description=f"One of {CLARITIES}.")

    _template_name: ClassVar[str] = "text-classification"
    _fields: ClassVar[tuple[str, ...]] = ("input_text", "label", "misleading_label")

    def attributes(self, task: str) -> dict[str, Any]:
        rng = self._rng(task)
        return {
            "language": self.language,
            "difficulty": self.difficulty or rng.choice(DIFFICULTIES),
            "clarity": self.clarity or rng.choice(CLARITIES),
        }


class _OnePromptGenerator(GeneratorTask):
    """A generator task that sends one prompt ``num_generations`` times and yields the rows."""

    def prompt(self) -> ChatType:
        raise NotImplementedError

    def _rows(self, out: Any, prompt: ChatType) -> list[dict[str, Any]]:
        return self.build_rows([{}], [prompt], [out])

    def process(self, offset: int = 0) -> GeneratorOutput:
        n = self.num_generations or 1
        # a resumed run asks again (answered from the request cache) and skips what it has
        prompt = self.prompt()
        out = self.llm.generate([prompt], num_generations=n)[0]
        rows = self._rows(out, prompt)
        yield rows[offset:], True


class EmbeddingTaskGenerator(LenientFormatOutput, _OnePromptGenerator):
    """Brainstorm embedding tasks of one ``category``: the ``tasks`` column (a list of
    descriptions), or with ``flatten_tasks`` one row per task in ``task``.

    Categories: ``text-retrieval``, ``text-matching-short``, ``text-matching-long``,
    ``text-classification``. Feed the tasks to the matching ``Generate...Data`` task.
    """

    category: Literal[
        "text-retrieval", "text-matching-short", "text-matching-long", "text-classification"
    ] = Field(default="text-retrieval", description="The kind of task to brainstorm.")
    flatten_tasks: bool = Field(default=False, description="One row per task.")

    def _template_path(self) -> tuple[str, str] | None:
        return (f"{_T}/brainstorming", self.category)

    @property
    def outputs(self) -> StepColumns:
        return ["task" if self.flatten_tasks else "tasks", "model_name"]

    def prompt(self) -> ChatType:
        content = self.render_prompt(f"{_T}/brainstorming", self.category)
        return [{"role": "user", "content": content}]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        data = extract_json(output)
        if isinstance(data, dict):
            data = next((v for v in data.values() if isinstance(v, list)), None)
        if not isinstance(data, list):
            raise ReplyParseError(f"the reply is not a JSON list of tasks: {preview(output)!r}")
        tasks = [str(t).strip() for t in data if isinstance(t, str) and t.strip()]
        if not tasks:
            raise ReplyParseError(f"the reply lists no task: {preview(output)!r}")
        return {"tasks": tasks}

    def _rows(self, out: Any, prompt: ChatType) -> list[dict[str, Any]]:
        rows = self.build_rows([{}], [prompt], [out])
        if not self.flatten_tasks:
            return rows
        flat: list[dict[str, Any]] = []
        for row in rows:
            tasks = row.pop("tasks")
            model = row.pop("model_name")
            for task in tasks if tasks is not None else [None]:
                flat.append({**row, "task": task, "model_name": model})
        return flat

    def own_outputs(self) -> dict[str, bool]:
        # the parser writes "tasks"; rows are flattened afterwards
        return {"task" if self.flatten_tasks else "tasks": True, "model_name": True}

    def _output_columns(self) -> list[str]:
        return ["tasks"]


class _TripletGenerator(LenientFormatOutput, _OnePromptGenerator):
    unit: str | None = Field(default=None, description=f"One of {UNITS}.")
    difficulty: str | None = Field(default=None, description=f"One of {TRIPLET_DIFFICULTIES}.")
    high_score: str | None = Field(default=None, description=f"One of {HIGH_SCORES}.")
    low_score: str | None = Field(default=None, description=f"One of {LOW_SCORES}.")
    seed: int = Field(default=42, description="Seed of the attributes drawn.")

    @property
    def outputs(self) -> StepColumns:
        return ["S1", "S2", "S3", "model_name"]

    def _common(self) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:{self.name}")
        return {
            "unit": self.unit or rng.choice(UNITS),
            "difficulty": self.difficulty or rng.choice(TRIPLET_DIFFICULTIES),
            "high_score": self.high_score or rng.choice(HIGH_SCORES),
            "low_score": self.low_score or rng.choice(LOW_SCORES),
        }

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return _fields(output, ("S1", "S2", "S3"))


class MonolingualTripletGenerator(_TripletGenerator):
    """A triplet in one ``language``: ``S1``, its paraphrase ``S2``, and ``S3`` close in
    words but not in meaning (``num_generations`` rows)."""

    _template_file: ClassVar[tuple[str, str] | None] = (_T, "monolingual-triplet")

    language: str = Field(default="English", description="Language of the three texts.")

    def prompt(self) -> ChatType:
        content = self.render_prompt(
            _T, "monolingual-triplet", language=self.language, **self._common()
        )
        return [{"role": "user", "content": content}]


class BitextRetrievalGenerator(_TripletGenerator):
    """``S1`` in ``source_language``, its translation ``S2`` in ``target_language``, and
    ``S3``, a near-translation that changes the meaning (``num_generations`` rows)."""

    _template_file: ClassVar[tuple[str, str] | None] = (_T, "bitext-retrieval")

    source_language: str = Field(default="English", description="Language of S1.")
    target_language: str = Field(description="Language of S2 and S3.")

    def prompt(self) -> ChatType:
        content = self.render_prompt(
            _T,
            "bitext-retrieval",
            source_language=self.source_language,
            target_language=self.target_language,
            **self._common(),
        )
        return [{"role": "user", "content": content}]


__all__ = [
    "BitextRetrievalGenerator",
    "EmbeddingTaskGenerator",
    "GenerateLongTextMatchingData",
    "GenerateShortTextMatchingData",
    "GenerateTextClassificationData",
    "GenerateTextRetrievalData",
    "MonolingualTripletGenerator",
]
