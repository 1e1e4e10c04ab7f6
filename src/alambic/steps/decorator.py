"""``@step``: turn a plain function into a step class.

    @step(inputs=["instruction"], outputs=["length"])
    def measure(inputs: StepInput, *, scale: RuntimeParameter[int] = 1) -> StepOutput:
        yield [{**row, "length": len(row["instruction"]) * scale} for row in inputs]

    measure_step = measure(name="measure")          # a Step instance, like any other

The function is the step's ``process``. A normal step's function takes one batch per
predecessor (``inputs`` or ``*inputs``); a global step's the same, with every row at once; a
generator's takes ``offset`` (rows already produced by an interrupted run: start there) and no
inputs. It may ``yield`` batches or ``return`` one list. Keyword-only arguments with defaults
become fields of the step, set at construction (``measure(scale=2)``); annotated
``RuntimeParameter[T]`` they are also runtime parameters, settable with
``pipeline.run(parameters={"measure": {"scale": 2}})``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal

from alambic.steps.base import (
    GeneratorStep,
    GlobalStep,
    Step,
    _Step,
    normalize_columns,
    normalize_generator_item,
)
from alambic.steps.typing import GeneratorOutput, Row, StepColumns, StepInput, StepOutput

StepKind = Literal["normal", "global", "generator"]

_BASES: dict[str, type[_Step]] = {
    "normal": Step,
    "global": GlobalStep,
    "generator": GeneratorStep,
}


def _as_batches(result: Any) -> Iterator[Any]:
    if result is None:
        return iter(())
    if isinstance(result, (list, tuple, dict)):
        return iter([result])
    return iter(result)


def _keyword_fields(fn: Callable[..., Any], skip: set[str]) -> dict[str, Any]:
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.name in skip or param.kind not in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            continue
        if param.default is inspect.Parameter.empty:
            if param.kind is inspect.Parameter.KEYWORD_ONLY:
                fields[param.name] = (hints.get(param.name, Any), ...)
            continue
        fields[param.name] = (hints.get(param.name, Any), param.default)
    return fields


def step(
    inputs: StepColumns | None = None,
    outputs: StepColumns | None = None,
    step_type: StepKind = "normal",
) -> Callable[[Callable[..., Any]], type[_Step]]:
    """Decorator: a function -> a ``Step`` (``"normal"``), ``GlobalStep`` or ``GeneratorStep``
    subclass named after it, whose ``process`` calls the function."""
    if step_type not in _BASES:
        raise ValueError(f"step_type must be one of {sorted(_BASES)}, got {step_type!r}.")
    declared_inputs = normalize_columns(inputs or [])
    declared_outputs = normalize_columns(outputs or [])
    if step_type == "generator" and declared_inputs:
        raise ValueError(
            f"A generator step has no predecessor, so it cannot declare inputs {list(declared_inputs)}."
        )

    def decorate(fn: Callable[..., Any]) -> type[_Step]:
        params = inspect.signature(fn).parameters
        if step_type == "generator":
            takes_offset = "offset" in params
            data_params: set[str] = {"offset"}
            arity: int | None = 0
        else:
            positional = [
                p
                for p in params.values()
                if p.kind
                in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                and p.default is inspect.Parameter.empty
            ]
            variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values())
            if not positional and not variadic:
                raise TypeError(
                    f"@step function {fn.__name__!r} takes no input batch: give it an `inputs` "
                    "argument (or `*inputs` for several predecessors), or use "
                    "step_type='generator'."
                )
            data_params = {p.name for p in positional}
            arity = None if variadic else len(positional)
            takes_offset = False
        fields = _keyword_fields(fn, data_params)
        field_names = list(fields)

        def _kwargs(self: _Step) -> dict[str, Any]:
            return {name: getattr(self, name) for name in field_names}

        def columns_in(self: _Step) -> StepColumns:
            return dict(declared_inputs)

        def columns_out(self: _Step) -> StepColumns:
            return dict(declared_outputs)

        namespace: dict[str, Any] = {
            "inputs": property(columns_in),
            "outputs": property(columns_out),
            "__doc__": fn.__doc__ or f"Step made from the function {fn.__name__!r} with @step.",
        }

        if step_type == "generator":

            def process_generator(self: GeneratorStep, offset: int = 0) -> GeneratorOutput:
                if takes_offset:
                    yield from _as_batches(fn(offset=offset, **_kwargs(self)))
                    return
                # The function cannot start at offset: produce from the start and skip.
                skip = offset
                for item in _as_batches(fn(**_kwargs(self))):
                    rows, last = normalize_generator_item(item, step_name=self.step_name)
                    if skip:
                        dropped = min(skip, len(rows))
                        rows, skip = rows[dropped:], skip - dropped
                        if not rows and not last:
                            continue
                    yield rows, bool(last)

            namespace["process"] = process_generator
        else:

            def process(self: Step, *batches: StepInput) -> StepOutput:
                for batch in _as_batches(fn(*batches, **_kwargs(self))):
                    out: list[Row] = [batch] if isinstance(batch, dict) else list(batch)
                    yield out

            def process_arity(self: Step) -> int | None:
                return arity

            namespace["process"] = process
            namespace["process_arity"] = process_arity

        annotations: dict[str, Any] = {}
        for name, (annotation, default) in fields.items():
            annotations[name] = annotation
            if default is not ...:
                namespace[name] = default
        namespace["__annotations__"] = annotations
        namespace["__module__"] = fn.__module__
        namespace["__qualname__"] = fn.__qualname__
        cls: type[_Step] = type(fn.__name__, (_BASES[step_type],), namespace)
        return cls

    return decorate


__all__ = ["StepKind", "step"]
