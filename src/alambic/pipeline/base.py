"""``Pipeline``: build a graph of steps, check it, and run it.

with Pipeline(name="my-pipeline") as pipeline:
    load = LoadDataFromDicts(data=[{"instruction": "..."}])
    generate = TextGeneration(llm=OpenAILLM(model="gpt-4o-mini"))
    load >> generate

distiset = pipeline.run(parameters={generate.name: {"llm": {"generation_kwargs": {...}}}})
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import logging
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from alambic.errors import AlambicUserError, PipelineValidationError, RuntimeParameterError
from alambic.pipeline._compat import PipelineCompatMixin, Signature, derive_pipeline_name
from alambic.pipeline.dag import DAG
from alambic.runtime_parameters import UnknownRuntimeParameterWarning
from alambic.steps.base import _CURRENT_PIPELINE, _Step
from alambic.utils.naming import validate_name
from alambic.utils.serialization import memoized_dumps

if TYPE_CHECKING:
    from collections.abc import Iterable
    from contextvars import Token

    from alambic.budget import Budget
    from alambic.distiset import Distiset
    from alambic.estimate import Estimate
    from alambic.pipeline.executor import Executor
    from alambic.steps.routing import RoutingBatchFunction

logger = logging.getLogger("alambic")


class Pipeline(PipelineCompatMixin):
    """A named graph of steps; ``run`` executes it and returns a :class:`Distiset`.

    Without a ``name``, the pipeline is named after the script that creates it (see
    ``derive_pipeline_name``). ``requirements`` lists packages (pip requirement strings)
    the pipeline needs; a missing one stops ``run`` before anything starts.
    """

    def __init__(
        self,
        name: str | None = None,
        description: str | None = None,
        *,
        cache_dir: str | Path | None = None,
        enable_metadata: bool = True,
        requirements: list[str] | None = None,
    ) -> None:
        self.name = validate_name(name or derive_pipeline_name(), what="pipeline", owner="Pipeline")
        self.requirements = list(requirements or [])
        self.description = description
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.enable_metadata = enable_metadata
        self.dag = DAG()
        self._token: Token[Any] | None = None
        self.last_summary: dict[str, Any] | None = None
        self._strict_parameters = False

    # -- building --------------------------------------------------------------------------

    def __enter__(self) -> Pipeline:
        self._token = _CURRENT_PIPELINE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _CURRENT_PIPELINE.reset(self._token)
            self._token = None

    def _add_step(self, step: _Step) -> None:
        self.dag.add_step(step)

    def _add_edge(self, from_step: str, to_step: str) -> None:
        self.dag.add_edge(from_step, to_step)

    def _step_names(self) -> list[str]:
        return list(self.dag.steps)

    def _set_routing(self, step_name: str, routing: RoutingBatchFunction) -> None:
        self.dag.routing[step_name] = routing

    def connect(self, *steps: _Step) -> None:
        """Connect ``steps`` in a chain: ``connect(a, b, c)`` is ``a >> b >> c``."""
        for a, b in itertools.pairwise(steps):
            a.connect(b)

    @property
    def steps(self) -> dict[str, _Step]:
        return dict(self.dag.steps)

    def get_step(self, name: str) -> _Step:
        try:
            return self.dag.steps[name]
        except KeyError:
            raise KeyError(
                f"No step {name!r} in pipeline {self.name!r}; steps: {list(self.dag.steps)}"
            ) from None

    # -- parameters and validation ---------------------------------------------------------

    def apply_parameters(
        self, parameters: dict[str, dict[str, Any]] | None, *, strict: bool | None = None
    ) -> None:
        """Set each step's runtime parameters from ``{step name: {parameter: value}}``.

        A step or parameter name that does not exist is ignored with an
        :class:`~alambic.runtime_parameters.UnknownRuntimeParameterWarning` (as distilabel
        does), or refused with :class:`RuntimeParameterError` when ``strict`` (default: what
        ``run(strict_parameters=...)`` chose, else ``False``).
        """
        if strict is None:
            strict = getattr(self, "_strict_parameters", False)
        for step_name, params in (parameters or {}).items():
            if step_name not in self.dag.steps:
                close = difflib.get_close_matches(step_name, list(self.dag.steps), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                message = (
                    f"run(parameters=...) names step {step_name!r}, which is not in pipeline "
                    f"{self.name!r}.{hint} Steps: {list(self.dag.steps)}."
                )
                if strict:
                    raise RuntimeParameterError(message)
                warnings.warn(
                    f"{message} Its parameters are ignored; run(..., strict_parameters=True) "
                    "refuses them instead.",
                    UnknownRuntimeParameterWarning,
                    stacklevel=2,
                )
                continue
            self.dag.steps[step_name].set_runtime_parameters(
                params, unknown="raise" if strict else "warn"
            )

    def validate(
        self, *, dataset_columns: list[str] | None = None, has_dataset: bool = False
    ) -> list[str]:
        """Check everything that can be checked before a token is spent; return the order."""
        order = self.dag.validate(has_dataset=has_dataset)
        for name in order:
            missing = self.dag.steps[name].missing_runtime_parameters()
            if missing:
                raise RuntimeParameterError(
                    f"Step {name!r} needs the runtime parameter(s) {missing}: set them when "
                    f"creating the step or with run(parameters={{{name!r}: {{{missing[0]!r}: ...}}}})."
                )
        self.dag.validate_columns(order, dataset_columns if has_dataset else None)
        return order

    # -- serialization and signatures ------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """The pipeline as plain data (secrets replaced by their environment variable names)."""
        from alambic.pipeline.serialization import pipeline_to_dict

        return pipeline_to_dict(self)

    def to_yaml(self) -> str:
        from alambic.pipeline.serialization import to_yaml

        return to_yaml(self)

    def to_json(self) -> str:
        from alambic.pipeline.serialization import to_json

        return to_json(self)

    def save(self, path: str | Path, format: Literal["yaml", "json"] | None = None) -> Path:
        """Write the pipeline to ``path`` as YAML or JSON (default: from the file's suffix)."""
        from alambic.pipeline.serialization import save

        return save(self, path, format)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, allow_modules: Iterable[str] = ()) -> Pipeline:
        """Rebuild a pipeline from :meth:`dump`'s data; see :mod:`alambic.pipeline.serialization`
        for ``allow_modules`` (which non-alambic modules a definition may import)."""
        from alambic.pipeline.serialization import pipeline_from_dict

        return pipeline_from_dict(data, allow_modules=allow_modules)

    @classmethod
    def from_yaml(cls, path: str | Path, *, allow_modules: Iterable[str] = ()) -> Pipeline:
        """Load a pipeline from a YAML file, a Distiset folder's ``pipeline.yaml``, or text."""
        from alambic.pipeline.serialization import from_yaml

        return from_yaml(path, allow_modules=allow_modules)

    @classmethod
    def from_json(cls, path: str | Path, *, allow_modules: Iterable[str] = ()) -> Pipeline:
        """Load a pipeline from a JSON file or text."""
        from alambic.pipeline.serialization import from_json

        return from_json(path, allow_modules=allow_modules)

    def step_signatures(self, order: list[str] | None = None) -> dict[str, str]:
        """Per step, a hash of what decides its output, chained through its predecessors."""
        order = order or self.dag.topological_order()
        signatures: dict[str, str] = {}
        for name in order:
            step = self.dag.steps[name]
            definition = step.signature_data()
            payload = {
                "definition": definition,
                "predecessors": [signatures[p] for p in self.dag.predecessors.get(name, [])],
                "routing": self.dag.routing[name].description if name in self.dag.routing else None,
            }
            if step.is_generator:
                payload["batch_size"] = getattr(step, "batch_size", None)
            preds = self.dag.predecessors.get(name, [])
            if len(preds) > 1 or any(p in self.dag.routing for p in preds):
                payload["input_batch_size"] = getattr(step, "input_batch_size", None)
            blob = json.dumps(payload, sort_keys=True, default=str)
            signatures[name] = hashlib.sha256(blob.encode()).hexdigest()
        return signatures

    @property
    def signature(self) -> Signature:
        """Identity of the pipeline definition: its name, steps and connections.

        A property, as in distilabel; calling it (``pipeline.signature()``) works too."""
        sigs = self.step_signatures()
        blob = json.dumps(
            {
                "name": self.name,
                "steps": sorted(sigs.items()),
                "edges": sorted((k, v) for k, vs in self.dag.successors.items() for v in vs),
            },
            sort_keys=True,
        )
        return Signature(hashlib.sha256(blob.encode()).hexdigest())

    # -- running ---------------------------------------------------------------------------

    def run(
        self,
        parameters: dict[str, dict[str, Any]] | None = None,
        use_cache: bool = True,
        dataset: Any = None,
        *,
        show_progress: bool | None = None,
        storage: bool = True,
        executor: Executor | str = "local",
        retry_failed: bool | Iterable[str] = True,
        budget: Budget | float | dict[str, Any] | None = None,
        strict_parameters: bool = False,
    ) -> Distiset:
        """Run the pipeline and return its :class:`Distiset`.

        ``parameters`` sets runtime parameters per step name. ``use_cache=False`` ignores what
        earlier runs committed (the request cache still answers repeated requests unless
        ``ALAMBIC_REQUEST_CACHE=0``). ``dataset`` (a list of dicts or a Hugging Face dataset)
        feeds the root step when the pipeline has no generator. ``executor`` is an
        :class:`~alambic.pipeline.executor.Executor` or its name (``"local"``).
        ``retry_failed`` decides which rows that failed in an earlier run are computed
        again: ``True`` (the transient kinds: connection, timeout, server errors, rate
        limits, authentication, a step's exception), ``False`` (none) or a list of kinds.
        ``budget`` caps the run at a number of USD, or ``Budget(usd=..., tokens=...,
        requests=...)``: the run stops cleanly before a request that could pass it (see
        docs/cost.md). A step or runtime parameter in ``parameters`` that does not exist is
        ignored with an ``UnknownRuntimeParameterWarning`` naming the closest match (as in
        distilabel); ``strict_parameters=True`` refuses it before anything starts.
        """
        import inspect

        from alambic.pipeline.executor import resolve_executor

        self.check_requirements()
        chosen = resolve_executor(executor)
        extra: dict[str, Any] = {}
        if budget is not None:
            if "budget" not in inspect.signature(chosen.run).parameters:
                raise AlambicUserError(
                    f"run(budget={budget!r}): the {chosen.name!r} executor does not keep "
                    "budgets yet; run with executor='local' to keep one."
                )
            extra["budget"] = budget
        self._strict_parameters = strict_parameters  # read by apply_parameters
        try:
            with memoized_dumps():  # the run's dumps of its steps share their long parts
                distiset = chosen.run(
                    self,
                    parameters=parameters,
                    use_cache=use_cache,
                    dataset=dataset,
                    show_progress=show_progress,
                    storage=storage,
                    retry_failed=retry_failed,
                    **extra,
                )
        finally:
            self._strict_parameters = False
        if self.artifacts_directory.is_dir():
            distiset.artifacts_path = self.artifacts_directory
        return distiset

    @property
    def artifacts_directory(self) -> Path:
        """Where steps' ``save_artifact`` writes: ``<cache dir>/artifacts/<pipeline name>``."""
        from alambic import settings

        return (self.cache_dir or settings.cache_dir()) / "artifacts" / self.name

    def dry_run(
        self, parameters: dict[str, dict[str, Any]] | None = None, batch_size: int = 1
    ) -> Distiset:
        """Run the whole pipeline on one batch of ``batch_size`` rows, without any caching."""
        from alambic.pipeline.executor import resolve_executor

        return resolve_executor("local").run(
            self,
            parameters=parameters,
            use_cache=False,
            show_progress=False,
            storage=False,
            dry_run_rows=batch_size,
        )

    def estimate(
        self,
        parameters: dict[str, dict[str, Any]] | None = None,
        *,
        dataset: Any = None,
        sample: int | None = None,
        token_counters: dict[str, Any] | None = None,
        latency_s: float | None = None,
    ) -> Estimate:
        """Requests, tokens, cost and time per task, without calling any LLM.

        ``sample=N`` first runs the pipeline for real on N rows (it calls the LLMs) to
        measure reply lengths and latency; otherwise replies are taken at ``max_new_tokens``.
        ``token_counters`` maps a task to a token counter (a callable ``messages -> int`` or
        a Hugging Face tokenizer path). See docs/cost.md.
        """
        from alambic.estimate import estimate_pipeline

        return estimate_pipeline(
            self,
            parameters=parameters,
            dataset=dataset,
            sample=sample,
            token_counters=token_counters,
            latency_s=latency_s,
        )

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, steps={list(self.dag.steps)})"


def _version() -> str:
    from alambic import __version__

    return __version__


__all__ = ["Pipeline", "PipelineValidationError"]
