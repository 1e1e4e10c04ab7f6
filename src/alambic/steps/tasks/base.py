"""Tasks: steps that turn rows into prompts for an LLM and its replies back into columns.

A task implements ``format_input(row) -> ChatType`` and ``format_output(reply, row) -> dict``;
the base does the rest: calling the LLM ``num_generations`` times per row, building the output
rows (grouped or not), recording raw inputs/outputs and token statistics in
``alambic_metadata``, and keeping failed generations as rows with ``None`` outputs and the
reason, instead of raising.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, PositiveInt, PrivateAttr

from alambic.errors import (
    METADATA_COLUMN,
    ColumnTypeError,
    ErrorKind,
    LLMRequestError,
    error_entry,
    row_refusal,
)
from alambic.llms.base import LLM, AsyncLLM, error_info
from alambic.llms.typing import FormattedInput, GenerateOutput, GenerationError
from alambic.runtime_parameters import RuntimeParameter
from alambic.steps.base import GeneratorStep, Step, _Step, merge_rows, normalize_columns
from alambic.steps.typing import Row, StepInput, StepOutput

logger = logging.getLogger("alambic")


class _Task(_Step):
    """What ``Task`` and ``GeneratorTask`` share: the LLM and how rows are built."""

    llm: LLM = Field(description="The LLM that answers this task's prompts.")
    group_generations: bool = Field(
        default=False,
        description="One row per input with lists of num_generations values, instead of "
        "num_generations rows.",
    )
    add_raw_output: RuntimeParameter[bool] = Field(
        default=True, description="Keep the LLM's reply in alambic_metadata."
    )
    add_raw_input: RuntimeParameter[bool] = Field(
        default=True, description="Keep the rendered prompt in alambic_metadata."
    )
    num_generations: RuntimeParameter[PositiveInt] = Field(
        default=1, description="Generations per input row."
    )
    add_reasoning_column: bool = Field(
        default=False,
        description="Also write the backend's reasoning (thinking) to a 'reasoning' column; it "
        "is always kept in alambic_metadata['reasoning_<name>'] when the backend returns it.",
    )

    _failures: int = PrivateAttr(default=0)
    _failure_logged: bool = PrivateAttr(default=False)
    _count_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _template: Any = PrivateAttr(default=None)
    """The task's prompt template, where distilabel keeps it: ``load()`` puts the packaged
    file there (``_template_file``), and a subclass's ``load()`` that assigns its own
    ``jinja2.Template`` (or template text) after ``super().load()`` changes the prompt."""
    _template_file: ClassVar[tuple[str, str] | None] = None

    def load(self) -> None:
        super().load()
        self.llm.load()
        path = self._template_path()
        if self._template is None and path is not None:
            from alambic.steps.tasks._templates import packaged_template

            self._template = packaged_template(*path)

    def _template_path(self) -> tuple[str, str] | None:
        """``(folder, name)`` of the packaged template ``load()`` puts in ``_template``."""
        return self._template_file

    def render_prompt(self, folder: str, name: str, /, **values: Any) -> str:
        """Render the task's template: ``self._template`` when set (distilabel's way to
        replace a prompt), else the packaged ``templates/<folder>/<name>.jinja2``."""
        from alambic.steps.tasks._templates import render, render_user_template

        if self._template is None:
            return render(folder, name, **values)
        return render_user_template(self._template, values, owner=f"Step {self.name!r}")

    def unload(self) -> None:
        self.llm.unload()
        super().unload()

    # -- the step/executor contract (see _Step) -------------------------------------------

    @property
    def replicable(self) -> bool:
        # an API client is concurrent inside: copies would only split its concurrency
        return not isinstance(self.llm, AsyncLLM)

    @property
    def exclusive_engine(self) -> bool:
        # a local engine (transformers, vLLM, llama.cpp) computes in this process
        return not isinstance(self.llm, AsyncLLM)

    def prefetch_modules(self) -> tuple[str, ...]:
        return tuple(self.llm.prefetch_modules())

    def attach_request_cache(self, cache: Any) -> None:
        self.llm.set_request_cache(cache)

    def attach_shared_budget(self, ledger: Any) -> None:
        if isinstance(self.llm, AsyncLLM):
            from alambic.llms.shared_budget import remote_budget_for

            self.llm.scheduler.attach_shared_budget(remote_budget_for(self.llm, ledger))

    async def aclose(self) -> None:
        if isinstance(self.llm, AsyncLLM):
            await self.llm.aclose()

    def progress_source(self) -> Any:
        return self.llm if isinstance(self.llm, AsyncLLM) else None

    def own_outputs(self) -> dict[str, bool]:
        outputs = normalize_columns(self.outputs)
        if self.add_reasoning_column:
            outputs.setdefault("reasoning", False)
        outputs.setdefault("model_name", True)
        if list(outputs)[-1] != "model_name":
            outputs["model_name"] = outputs.pop("model_name")
        return outputs

    @abstractmethod
    def format_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Turn one reply into the task's output columns (``model_name`` is added for you)."""

    @property
    def failures(self) -> int:
        """Generations that failed (LLM error or unparsable reply) since the task was created."""
        return self._failures

    def _record_failure(self, error: GenerationError) -> None:
        with self._count_lock:
            self._failures += 1
            first = not self._failure_logged
            self._failure_logged = True
        if first:
            logger.warning(
                "Task %r: a generation failed (%s: %s). Failed rows keep None outputs with the "
                "reason in %s['error_%s']; the count is in the run summary.",
                self.name,
                error["type"],
                error["message"][:300],
                METADATA_COLUMN,
                self.name,
            )

    def _output_columns(self) -> list[str]:
        return [c for c in self.own_outputs() if c != "model_name"]

    def _format_one(
        self, text: str | None, error: GenerationError | None, row: Row
    ) -> tuple[dict[str, Any], GenerationError | None]:
        columns = self._output_columns()
        if error is not None or text is None:
            return dict.fromkeys(columns), error or error_entry(
                ErrorKind.INVALID_RESPONSE, "the LLM returned no text", type="EmptyReply"
            )
        try:
            # built-in tasks' format_output returns None columns; this variant keeps the reason
            # looked up on the class: on the instance, a task without it went through
            # pydantic's attribute fallback and a caught AttributeError for every reply
            strict = getattr(type(self), "format_output_or_raise", None)
            formatted = (
                strict(self, text, row) if strict is not None else self.format_output(text, row)
            )
        except Exception as exc:  # a reply the parser cannot read is a failed row, not a crash
            return dict.fromkeys(columns), error_entry(ErrorKind.FORMAT_OUTPUT, exc, type=exc)
        if not isinstance(formatted, dict):
            return dict.fromkeys(columns), error_entry(
                ErrorKind.FORMAT_OUTPUT,
                f"format_output returned {type(formatted).__name__}, not a dict",
                type="TypeError",
            )
        return {c: formatted.get(c) for c in columns} | {
            k: v for k, v in formatted.items() if k not in columns and k != "model_name"
        }, None

    def build_rows(
        self,
        inputs: Sequence[Row],
        formatted: Sequence[FormattedInput | None],
        outputs: Sequence[GenerateOutput],
    ) -> list[Row]:
        """Rows for ``inputs`` from the LLM's outputs, in the shape the spec documents."""
        name = self.name
        model_name = self.llm.model_name
        rows: list[Row] = []
        for row, prompt, out in zip(inputs, formatted, outputs, strict=True):
            errors = out.get("errors") or [None] * len(out["generations"])
            reasonings = out.get("reasonings") or [None] * len(out["generations"])
            stats = out["statistics"]
            latency = out.get("latency_s")
            retries = out.get("retries")
            values: list[dict[str, Any]] = []
            metas: list[dict[str, Any]] = []
            for j, text in enumerate(out["generations"]):
                columns, error = self._format_one(text, errors[j], row)
                meta: dict[str, Any] = {}
                if self.add_raw_output:
                    meta[f"raw_output_{name}"] = text
                if self.add_raw_input:
                    meta[f"raw_input_{name}"] = prompt[0] if isinstance(prompt, tuple) else prompt
                meta[f"statistics_{name}"] = {
                    "input_tokens": stats["input_tokens"][j],
                    "output_tokens": stats["output_tokens"][j],
                }
                if latency is not None:  # seconds its request took (none: answered from cache)
                    meta[f"latency_{name}"] = latency
                if retries:  # failed attempts before the answer
                    meta[f"retries_{name}"] = retries
                if error is not None:
                    meta[f"error_{name}"] = dict(error)
                    self._record_failure(error)
                if reasonings[j] is not None:  # kept apart, never mixed into the generation
                    meta[f"reasoning_{name}"] = reasonings[j]
                if self.add_reasoning_column:
                    columns["reasoning"] = reasonings[j]
                values.append(columns)
                metas.append(meta)
            existing = row.get(METADATA_COLUMN)
            if self.group_generations:
                grouped: Row = {k: v for k, v in row.items() if k != METADATA_COLUMN}
                for column in values[0] if values else self._output_columns():
                    grouped[column] = [v.get(column) for v in values]
                grouped[METADATA_COLUMN] = [
                    _merge_meta(existing, m, i) for i, m in enumerate(metas)
                ]
                grouped["model_name"] = model_name
                rows.append(grouped)
            else:
                for columns, meta in zip(values, metas, strict=True):
                    new: Row = {k: v for k, v in row.items() if k != METADATA_COLUMN}
                    new.update(columns)
                    new[METADATA_COLUMN] = _merge_meta(existing, meta, 0)
                    new["model_name"] = model_name
                    rows.append(new)
        return rows

    def failed_rows_for_inputs(
        self,
        inputs: Sequence[Row],
        formatted: Sequence[FormattedInput | None],
        error: BaseException,
    ) -> list[Row]:
        """Rows for inputs that could not even be sent (for example a bad column type)."""
        n = self.num_generations or 1
        info = error_info(error)
        out: GenerateOutput = {
            "generations": [None] * n,
            "statistics": {"input_tokens": [None] * n, "output_tokens": [None] * n},
            "errors": [info] * n,
        }
        return self.build_rows(inputs, formatted, [out] * len(inputs))


def _merge_meta(existing: Any, new: dict[str, Any], index: int) -> dict[str, Any]:
    if isinstance(existing, dict):
        return {**existing, **new}
    if (
        isinstance(existing, list)
        and existing
        and isinstance(existing[min(index, len(existing) - 1)], dict)
    ):
        return {**existing[min(index, len(existing) - 1)], **new}
    return new


class Task(_Task, Step):
    """A step that asks an LLM about each input row.

    Subclasses declare ``inputs`` and ``outputs`` and implement ``format_input`` and
    ``format_output``. Standalone use: ``task.load()`` then ``next(task.process(rows))``.
    """

    @abstractmethod
    def format_input(self, input: dict[str, Any]) -> FormattedInput:
        """The chat messages (OpenAI format) to send for one input row."""

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        """Generate for a batch of rows and yield the output rows (one batch)."""
        formatted = [self.format_input(row) for row in inputs]
        outputs = self.llm.generate(formatted, num_generations=self.num_generations or 1)
        yield self.build_rows(inputs, formatted, outputs)

    # -- the executor's path ---------------------------------------------------------------

    def uses_default_process(self) -> bool:
        """Whether ``process`` is the base one, so the executor may use the async path."""
        return type(self).process is Task.process

    @property
    def processes_rows_async(self) -> bool:
        return self.uses_default_process() and isinstance(self.llm, AsyncLLM)

    @property
    def concurrency_hint(self) -> int:
        if self.processes_rows_async:
            assert isinstance(self.llm, AsyncLLM)
            return max(1, self.llm.max_concurrency or 64)
        return super().concurrency_hint

    def process_batch(self, *inputs: list[Row]) -> list[Row]:
        if type(self).process is not Task.process:
            return super().process_batch(*inputs)
        rows = [self.rename_input_row(r) for r in merge_rows(list(inputs))]
        formatted, format_errors = self._format_inputs_safely(rows)
        valid = [i for i, f in enumerate(formatted) if f is not None]
        n = self.num_generations or 1
        batch = [formatted[i] for i in valid]
        results = self.llm.generate(batch, num_generations=n) if batch else []  # type: ignore[arg-type]
        return [
            self.rename_output_row(r)
            for r in self._rows_for(rows, formatted, format_errors, valid, results)
        ]

    async def aprocess_row(self, row: Row) -> list[Row]:
        renamed = self.rename_input_row(row)
        llm = self.llm
        assert isinstance(llm, AsyncLLM)
        if type(self).aprocess_rows is not Task.aprocess_rows:  # a task's own batch logic
            rows = await self.aprocess_rows([renamed])
        else:
            rows = await self._aprocess_one(renamed, llm)
        if not self.input_mappings and not self.output_mappings:
            return rows
        return [self.rename_output_row(r) for r in rows]

    async def _aprocess_one(self, renamed: Row, llm: AsyncLLM) -> list[Row]:
        try:
            formatted = self._format_sendable(renamed)
        except Exception as exc:  # becomes a failed row with this reason
            rows = self.failed_rows_for_inputs([renamed], [None], exc)
        else:
            out = await llm.agenerate(formatted, self.num_generations or 1)
            rows = self.build_rows([renamed], [formatted], [out])
        return rows

    def _rows_for(
        self,
        inputs: Sequence[Row],
        formatted: list[FormattedInput | None],
        format_errors: list[BaseException | None],
        valid: list[int],
        results: Sequence[GenerateOutput],
    ) -> list[Row]:
        outputs: list[GenerateOutput | None] = [None] * len(inputs)
        for i, out in zip(valid, results, strict=True):
            outputs[i] = out
        rows: list[Row] = []
        for i, row in enumerate(inputs):
            error = format_errors[i]
            if error is not None:
                rows.extend(self.failed_rows_for_inputs([row], [None], error))
            else:
                result = outputs[i]
                assert result is not None
                rows.extend(self.build_rows([row], [formatted[i]], [result]))
        return rows

    def _format_sendable(self, row: Row) -> FormattedInput:
        """``format_input``, unless an earlier step refused the row for a value whose type
        does not match its column: then no request is sent (the row fails with kind input)."""
        if METADATA_COLUMN in row:
            refused = row_refusal(row)
            if refused is not None:
                error = LLMRequestError(f"Not sent: {refused}", kind=ErrorKind.INPUT)
                raise error from ColumnTypeError(refused)
        return self.format_input(row)

    def _format_inputs_safely(
        self, inputs: Sequence[Row]
    ) -> tuple[list[FormattedInput | None], list[BaseException | None]]:
        formatted: list[FormattedInput | None] = []
        errors: list[BaseException | None] = []
        for row in inputs:
            try:
                formatted.append(self._format_sendable(row))
                errors.append(None)
            except Exception as exc:  # becomes a failed row with this reason
                formatted.append(None)
                errors.append(exc)
        return formatted, errors

    async def aprocess_rows(self, inputs: Sequence[Row]) -> list[Row]:
        """Process one batch inside the executor's loop: requests run concurrently."""
        formatted, format_errors = self._format_inputs_safely(inputs)
        n = self.num_generations or 1
        llm = self.llm
        valid = [i for i, f in enumerate(formatted) if f is not None]
        if isinstance(llm, AsyncLLM):
            results = await asyncio.gather(
                *(llm.agenerate(formatted[i], n) for i in valid)  # type: ignore[arg-type]
            )
        else:
            batch = [formatted[i] for i in valid]
            results = await asyncio.to_thread(llm.generate, batch, n) if batch else []  # type: ignore[arg-type]
        return self._rows_for(inputs, formatted, format_errors, valid, results)


class GeneratorTask(_Task, GeneratorStep):
    """A task with no inputs that produces rows from its own prompts.

    Override ``process(offset=0)``; call ``self.llm.generate(...)``, keep its reply apart from
    the row you build, and yield a batch, for example::

        def process(self, offset: int = 0) -> GeneratorOutput:
            outputs = self.llm.generate([[{"role": "user", "content": self.instruction}]])
            text = outputs[0]["generations"][0]
            yield [{**self.format_output(text), "model_name": self.llm.model_name}]
    """

    _is_generator: ClassVar[bool] = True


__all__ = ["METADATA_COLUMN", "GeneratorTask", "Task"]
