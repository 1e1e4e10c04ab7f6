"""Steps: the units a pipeline is made of.

A step declares the columns it reads (``inputs``) and writes (``outputs``) so a pipeline can be
checked before anything runs, and implements ``process`` as a generator of batches. Three kinds:

- ``Step``: receives batches of ``input_batch_size`` rows, one list per predecessor.
- ``GeneratorStep``: has no predecessor; ``process(offset)`` produces batches of ``batch_size``.
- ``GlobalStep``: receives every row at once (deduplication, sorting, statistics).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, PrivateAttr, model_validator

from alambic.errors import MappingError, PipelineValidationError
from alambic.runtime_parameters import (
    RuntimeParameter,
    missing_required_runtime_parameters,
    runtime_parameter_names,
    set_runtime_parameters,
    unknown_policy,
)
from alambic.steps._compat import StepCompatMixin
from alambic.steps.resources import StepKind, StepResources
from alambic.steps.rows import merge_rows, normalize_columns, normalize_generator_item
from alambic.steps.typing import GeneratorOutput, Row, StepColumns, StepInput, StepOutput
from alambic.utils.arguments import misspelt_arguments, unknown_arguments
from alambic.utils.models import FastPrivateAttributes
from alambic.utils.naming import snake_case, validate_name
from alambic.utils.serialization import dump_component

if TYPE_CHECKING:
    from alambic.steps.routing import RoutingBatchFunction

logger = logging.getLogger("alambic")


class UnknownArgumentWarning(UserWarning):
    """A step or LLM was given a keyword argument it does not have; it is ignored."""


class PipelineLike(Protocol):
    """What a step needs from the pipeline it belongs to (the pipeline layer implements it)."""

    name: str

    def _add_step(self, step: _Step) -> None: ...

    def _add_edge(self, from_step: str, to_step: str) -> None: ...

    def _step_names(self) -> list[str]: ...

    def _set_routing(self, step_name: str, routing: RoutingBatchFunction) -> None: ...


_CURRENT_PIPELINE: contextvars.ContextVar[PipelineLike | None] = contextvars.ContextVar(
    "alambic_current_pipeline", default=None
)


_SHADOWED = "__alambic_shadowed__"
"""Row key carrying columns an input mapping hid from ``process``; restored afterwards (it is
only present when a row already had a column named like the step's mapped input)."""


class _Step(StepCompatMixin, FastPrivateAttributes, BaseModel, ABC):
    """What every kind of step shares: name, columns, mappings, pipeline membership."""

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=True,
        validate_default=True,
        extra="forbid",
        protected_namespaces=(),
        hide_input_in_errors=True,  # an error never echoes the arguments (an LLM's key)
    )

    name: str | None = Field(default=None, description="Unique name of the step in its pipeline.")
    input_mappings: dict[str, str] = Field(
        default_factory=dict,
        description="Step column -> column of the incoming rows it is read from.",
    )
    output_mappings: dict[str, str] = Field(
        default_factory=dict,
        description="Step output column -> name it gets in the outgoing rows.",
    )
    resources: StepResources = Field(default_factory=StepResources)
    use_cache: bool = Field(
        default=True, description="Reuse committed results of this step when the run resumes."
    )
    pipeline: Any = Field(default=None, exclude=True, repr=False)

    _is_generator: ClassVar[bool] = False
    _is_global: ClassVar[bool] = False
    _runs_inline: ClassVar[bool] = False
    """Built-in steps that are pure and cheap run on the event loop instead of a thread."""

    _loaded: bool = PrivateAttr(default=False)
    _logger: logging.Logger = PrivateAttr(default=logger)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_arguments(cls, data: Any) -> Any:
        """A typo of a real argument is an error naming it; any other unknown argument is
        ignored with a warning (a custom task may be given extra ones, as the spec's are)."""
        if not isinstance(data, dict):
            return data
        hints, known = unknown_arguments(data, cls.model_fields)
        if hints:
            misspelt = misspelt_arguments(data, cls.model_fields)
            if misspelt:
                raise ValueError(
                    f"{cls.__name__} has no argument {', '.join(misspelt)}: fix the name. {known}"
                )
            warnings.warn(
                f"{cls.__name__} has no argument {', '.join(hints)}; ignored. {known}",
                UnknownArgumentWarning,
                stacklevel=4,
            )
            data = {k: v for k, v in data.items() if k in cls.model_fields}
        return data

    def __init__(self, /, **data: Any) -> None:
        # checks run after pydantic's validation so their errors keep their own class
        super().__init__(**data)
        self._finish_init()

    def _finish_init(self) -> None:
        pipeline = self.pipeline if self.pipeline is not None else _CURRENT_PIPELINE.get()
        if self.name is None:
            base = snake_case(type(self).__name__)
            taken = set(pipeline._step_names()) if pipeline is not None else set()
            index = 0
            while f"{base}_{index}" in taken:
                index += 1
            self.name = f"{base}_{index}"
        validate_name(self.name, owner=type(self).__name__)
        self._validate_mappings()
        if pipeline is not None:
            self.pipeline = pipeline
            pipeline._add_step(self)
        else:  # as distilabel does: standalone use is fine, a forgotten `with` is not
            self._logger.warning(
                "Step %r was created outside a pipeline: it runs standalone (load() then "
                "process()), but it is in no pipeline until created inside `with Pipeline(...)`"
                " or given pipeline=.",
                self.name,
            )

    # -- columns ---------------------------------------------------------------------------

    @property
    def inputs(self) -> StepColumns:
        """Columns this step reads; a dict marks optional ones with ``False``."""
        return []

    @property
    def outputs(self) -> StepColumns:
        """Columns this step writes."""
        return []

    def own_inputs(self) -> dict[str, bool]:
        """Input columns under the step's own names (before ``input_mappings``)."""
        return normalize_columns(self.inputs)

    def own_outputs(self) -> dict[str, bool]:
        """Output columns under the step's own names (before ``output_mappings``)."""
        return normalize_columns(self.outputs)

    def get_inputs(self) -> dict[str, bool]:
        """Input columns as the incoming rows name them (after ``input_mappings``) -> required.

        As distilabel's ``get_inputs()``; :meth:`own_inputs` gives the step's own names.
        """
        return self.mapped_inputs()

    def get_outputs(self) -> dict[str, bool]:
        """Output columns as the outgoing rows name them (after ``output_mappings``).

        As distilabel's ``get_outputs()``; :meth:`own_outputs` gives the step's own names.
        """
        return self.mapped_outputs()

    @property
    def step_name(self) -> str:
        """The name, which is always set after construction."""
        assert self.name is not None
        return self.name

    def _validate_mappings(self) -> None:
        try:
            inputs = self.own_inputs()
            outputs = self.own_outputs()
        except Exception:  # columns that depend on load(); checked again by the pipeline
            return
        self.check_mappings(inputs, outputs)

    def check_mappings(self, inputs: dict[str, bool], outputs: dict[str, bool]) -> None:
        """Raise if a mapping names a column the step does not declare."""
        for key in self.input_mappings:
            if key not in inputs:
                raise MappingError(
                    f"Step {self.name!r} ({type(self).__name__}): input_mappings key {key!r} is "
                    f"not one of its input columns {list(inputs)}. input_mappings maps the "
                    f"step's column to the column of your data, e.g. "
                    f"{{{next(iter(inputs), 'instruction')!r}: {key!r}}}."
                )
        for key in self.output_mappings:
            if key not in outputs:
                raise MappingError(
                    f"Step {self.name!r} ({type(self).__name__}): output_mappings key {key!r} "
                    f"is not one of its output columns {list(outputs)}. output_mappings maps "
                    f"the step's column to the name you want, e.g. "
                    f"{{{next(iter(outputs), 'generation')!r}: {key!r}}}."
                )

    def mapped_inputs(self) -> dict[str, bool]:
        """Input columns as they are named in the incoming rows (after ``input_mappings``)."""
        return {self.input_mappings.get(c, c): req for c, req in self.own_inputs().items()}

    def mapped_outputs(self) -> dict[str, bool]:
        """Output columns as they are named in the outgoing rows (after ``output_mappings``)."""
        return {self.output_mappings.get(c, c): req for c, req in self.own_outputs().items()}

    # -- lifecycle -------------------------------------------------------------------------

    def load(self) -> None:
        """Prepare what ``process`` needs (models, clients). Called once before processing."""
        self._loaded = True

    def unload(self) -> None:
        """Release what ``load`` took."""
        self._loaded = False

    # -- the step/executor contract --------------------------------------------------------
    # Everything an executor needs to know about a step, so it never inspects step classes
    # (Task, LLMs...) or private flags. Subclasses override what differs from the defaults.

    @property
    def kind(self) -> StepKind:
        """Generator, normal or global (decides how the executor feeds the step)."""
        if self._is_generator:
            return StepKind.GENERATOR
        if self._is_global:
            return StepKind.GLOBAL
        return StepKind.NORMAL

    @property
    def is_generator(self) -> bool:
        return self.kind is StepKind.GENERATOR

    @property
    def is_global(self) -> bool:
        return self.kind is StepKind.GLOBAL

    @property
    def is_normal(self) -> bool:
        return self.kind is StepKind.NORMAL

    @property
    def runs_inline(self) -> bool:
        """Pure and cheap: the executor may call it on its event loop instead of a thread."""
        return type(self)._runs_inline

    @property
    def passes_unknown_columns(self) -> bool:
        """Outputs known only at run time: the pipeline cannot check columns after it."""
        return False

    @property
    def processes_rows_async(self) -> bool:
        """Whether the executor should send rows one by one to :meth:`aprocess_row` (on its
        event loop, many at once) instead of whole batches to ``process``. Tasks whose LLM is
        an API client say yes: then a slow request holds only its own row."""
        return False

    @property
    def concurrency_hint(self) -> int:
        """How many rows (when :attr:`processes_rows_async`) or batches (otherwise) the
        executor should have in flight for this step at once."""
        return max(1, self.resources.replicas)

    @property
    def replicable(self) -> bool:
        """Whether ``resources.replicas`` copies of the step may run side by side (a step
        that is already concurrent inside, such as an API-client task, says no)."""
        return True

    @property
    def exclusive_engine(self) -> bool:
        """Whether the step drives a local engine that uses the whole machine (a model on
        the CPU or a GPU): the executor then never runs two of its batches at once."""
        return False

    def prefetch_modules(self) -> tuple[str, ...]:
        """Modules ``load`` will import, which the executor may import early in a thread."""
        return ()

    def attach_request_cache(self, cache: Any) -> None:
        """Hook: the executor hands the run's request cache (or ``None`` to detach it)."""

    def attach_shared_budget(self, ledger: Any) -> None:
        """Hook: a distributed executor shares one rate budget among every copy of the step.

        ``ledger`` is the executor's host of the run's budget ledger (see
        :func:`shared_budget_ledger`); API clients pace their requests by it.
        """

    async def aclose(self) -> None:
        """Hook: close what was opened on the executor's event loop (API clients)."""

    def progress_source(self) -> Any:
        """What the progress display reads request counts from (an async LLM), or ``None``."""
        return None

    #: Names of this component's fields that do not change its results (sizes, resources,
    #: caching switches): they are left out of the pipeline's signature. Row data is never
    #: left out. Subclasses extend it: ``signature_exclude = _Step.signature_exclude | {...}``.
    signature_exclude: ClassVar[frozenset[str]] = frozenset(
        {"input_batch_size", "resources", "use_cache", "batch_size"}
    )

    def signature_data(self) -> dict[str, Any]:
        """What identifies this step's results: its dump without :attr:`signature_exclude`,
        nested components (an LLM) reduced the same way by their own exclusions."""
        view: dict[str, Any] = _signature_view(self, self.dump())
        return view

    # -- runtime parameters ----------------------------------------------------------------

    @property
    def runtime_parameters_names(self) -> dict[str, Any]:
        return runtime_parameter_names(self)

    def set_runtime_parameters(
        self,
        params: dict[str, Any],
        *,
        strict: bool = False,
        unknown: Literal["raise", "warn"] | None = None,
    ) -> None:
        """Set runtime parameters (nested ones, e.g. ``{"llm": {...}}``, as dicts).

        An unknown name is ignored with an
        :class:`~alambic.runtime_parameters.UnknownRuntimeParameterWarning` (as distilabel
        does), or refused with ``RuntimeParameterError`` when ``strict=True``; either way the
        message has a did-you-mean and the known names. A bad value always raises.
        """
        set_runtime_parameters(
            self,
            params,
            owner=f"step {self.name!r}",
            unknown=unknown_policy(strict, unknown),
            stacklevel=3,
        )

    def missing_runtime_parameters(self) -> list[str]:
        return missing_required_runtime_parameters(self)

    # -- connecting ------------------------------------------------------------------------

    def _require_pipeline(self) -> PipelineLike:
        if self.pipeline is None:
            raise PipelineValidationError(
                f"Step {self.name!r} is not part of a pipeline, so it cannot be connected: "
                "create it inside `with Pipeline(...) as pipeline:` or pass `pipeline=`."
            )
        pipeline: PipelineLike = self.pipeline
        return pipeline

    def connect(
        self, *steps: _Step, routing_batch_function: RoutingBatchFunction | None = None
    ) -> None:
        """Send this step's output to ``steps`` (to a sample of them with a routing function)."""
        pipeline = self._require_pipeline()
        for step in steps:
            if step.pipeline is not pipeline:
                raise PipelineValidationError(
                    f"Cannot connect step {self.name!r} to {step.name!r}: they belong to "
                    "different pipelines (or one to none)."
                )
            pipeline._add_edge(self.step_name, step.step_name)
        if routing_batch_function is not None:
            pipeline._set_routing(self.step_name, routing_batch_function)

    def __rshift__(self, other: Any) -> Any:
        from alambic.steps.routing import RoutingBatchFunction

        if isinstance(other, _Step):
            self.connect(other)
            return other
        if isinstance(other, list):
            if not all(isinstance(s, _Step) for s in other):
                raise TypeError(f"`>>` takes steps or a list of steps, got {other!r}")
            self.connect(*other)
            return other
        if isinstance(other, RoutingBatchFunction):
            return other.bind(self)
        return NotImplemented

    def __rrshift__(self, other: Any) -> Any:
        if isinstance(other, list) and all(isinstance(s, _Step) for s in other):
            for step in other:
                step.connect(self)
            return self
        return NotImplemented

    # -- serialization ---------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Plain data describing the step (secrets masked), for YAML and signatures."""
        return dump_component(self)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return [("name", self.name)]


class Step(_Step):
    """A step that transforms batches of rows.

    ``process(self, *inputs)`` receives one list of rows per predecessor (most steps have one:
    ``def process(self, inputs: StepInput)``) and yields output batches. Every yielded batch is
    used.
    """

    input_batch_size: RuntimeParameter[PositiveInt] = Field(
        default=50, description="How many rows each call to process() receives."
    )

    @abstractmethod
    def process(self, *inputs: StepInput) -> StepOutput:
        """Yield batches of output rows computed from the input batches."""

    def process_applying_mappings(self, *inputs: StepInput) -> Iterator[list[Row]]:
        """``process`` with the column renames of ``input_mappings``/``output_mappings``."""
        if not self.input_mappings and not self.output_mappings:
            yield from self.process(*inputs)
            return
        renamed = [[self.rename_input_row(row) for row in batch] for batch in inputs]
        for batch in self.process(*renamed):
            yield [self.rename_output_row(row) for row in batch]

    def rename_input_row(self, row: Row) -> Row:
        if not self.input_mappings:
            return row
        new = dict(row)
        shadowed: dict[str, Any] = {}
        for step_col, data_col in self.input_mappings.items():
            if data_col in row:
                if step_col in row and step_col not in self.input_mappings.values():
                    shadowed[step_col] = row[step_col]  # a column of the same name, hidden
                new[step_col] = row[data_col]
                if data_col not in self.input_mappings:
                    new.pop(data_col, None)
        if shadowed:
            new[_SHADOWED] = shadowed
        return new

    def rename_output_row(self, row: Row) -> Row:
        if not self.input_mappings and not self.output_mappings:
            return row
        outputs = self.own_outputs()
        shadowed = row.get(_SHADOWED) or {}
        new: Row = {}
        for column, value in row.items():
            if column in outputs or column == _SHADOWED:
                continue
            new[self.input_mappings.get(column, column)] = value
        new.update(shadowed)
        for column in outputs:  # the step's outputs win over restored input columns
            if column in row:
                new[self.output_mappings.get(column, column)] = row[column]
        return new

    def process_batch(self, *inputs: list[Row]) -> list[Row]:
        """The batch entry point the executor calls: one list of rows per predecessor (merged
        into one list when ``process`` takes one), mappings applied here and only here."""
        arity = self.process_arity()
        args = inputs if arity is None or arity == len(inputs) else (merge_rows(list(inputs)),)
        rows: list[Row] = []
        for batch in self.process_applying_mappings(*args):
            if isinstance(batch, dict):
                rows.append(batch)
            else:
                rows.extend(batch)
        return rows

    async def aprocess_row(self, row: Row) -> list[Row]:
        """One row (already merged), mappings applied, on the executor's event loop; only
        called when :attr:`processes_rows_async` is true."""
        raise NotImplementedError(f"{type(self).__name__} does not process rows one by one.")

    def process_arity(self) -> int | None:
        """How many input lists ``process`` takes (``None``: any number)."""
        params = list(inspect.signature(self.process).parameters.values())
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
            return None
        return sum(
            1
            for p in params
            if p.kind
            in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        )


class GlobalStep(Step):
    """A step that receives all the rows at once, in one call to ``process``."""

    _is_global: ClassVar[bool] = True


class GeneratorStep(_Step):
    """A step with no predecessor that produces rows.

    ``process(offset=0)`` may yield ``(rows, is_last)`` pairs, plain lists of rows, or single
    rows; alambic re-batches them to ``batch_size``. ``offset`` is the number of rows already
    produced by an earlier run, so a resumed run continues where the last one stopped.
    """

    batch_size: RuntimeParameter[PositiveInt] = Field(
        default=50, description="How many rows each output batch holds."
    )

    _is_generator: ClassVar[bool] = True

    applies_output_mappings: ClassVar[bool] = False
    """True when ``process`` itself yields rows already renamed by ``output_mappings`` (the
    built-in loaders do, so they can be used alone); the entry point then leaves them as
    they are, so rows are never renamed twice."""

    @abstractmethod
    def process(self, offset: int = 0) -> GeneratorOutput:
        """Yield batches of rows, starting after ``offset`` rows."""

    def process_applying_mappings(self, offset: int = 0) -> Iterator[tuple[list[Row], bool | None]]:
        """The entry point the executor calls: ``(rows, is_last)`` pairs, output mappings
        applied exactly once."""
        mappings = None if self.applies_output_mappings else self.output_mappings
        for item in self.process(offset):
            rows, last = normalize_generator_item(item, step_name=self.step_name)
            if mappings:
                rows = [{mappings.get(k, k): v for k, v in row.items()} for row in rows]
            yield rows, last


def shared_budget_ledger() -> Any:
    """A new ledger of API rate budgets, for a distributed executor to host once per run and
    hand to every copy of every step (:meth:`_Step.attach_shared_budget`)."""
    from alambic.llms.shared_budget import BudgetLedger

    return BudgetLedger()


def _signature_view(component: Any, dumped: Any) -> Any:
    """``dumped`` without the fields ``component`` (and its nested components) exclude."""
    if not isinstance(dumped, dict):
        return dumped
    exclude: frozenset[str] = getattr(component, "signature_exclude", frozenset())
    view: dict[str, Any] = {}
    for key, value in dumped.items():
        if key in exclude:
            continue
        child = getattr(component, key, None) if isinstance(key, str) else None
        if isinstance(value, dict) and hasattr(child, "signature_exclude"):
            view[key] = _signature_view(child, value)
        else:
            view[key] = value  # data (rows, templates, settings): kept whole
    return view


StepType = Step | GlobalStep | GeneratorStep

__all__ = [
    "GeneratorStep",
    "GlobalStep",
    "Step",
    "StepInput",
    "StepKind",
    "StepOutput",
    "StepResources",
    "UnknownArgumentWarning",
    "merge_rows",
    "normalize_columns",
    "normalize_generator_item",
]
