"""Runtime parameters: attributes a user may set after construction, at ``Pipeline.run``.

A field is a runtime parameter when its annotation is ``RuntimeParameter[T]`` (optional) or
``RequiredRuntimeParameter[T]`` (must be set, at construction or through
``run(parameters=...)``, before the pipeline starts). Steps and LLMs expose them so the same
pipeline file can run with other batch sizes, temperatures or paths without being edited.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import BaseModel

from alambic.errors import RuntimeParameterError

T = TypeVar("T")


class UnknownRuntimeParameterWarning(UserWarning):
    """``run(parameters=...)`` named a step or a runtime parameter that does not exist.

    As in distilabel, the name is ignored and the run goes on; ``run(...,
    strict_parameters=True)`` (and the CLI's ``--param``) refuse it instead.
    """


@dataclass(frozen=True, slots=True)
class _RuntimeParameterMarker:
    required: bool = False


RuntimeParameter = Annotated[T | None, _RuntimeParameterMarker()]
"""``RuntimeParameter[int]``: an attribute that may be set after construction."""

RequiredRuntimeParameter = Annotated[T | None, _RuntimeParameterMarker(required=True)]
"""Like ``RuntimeParameter`` but the pipeline refuses to start while it is ``None``."""


def relax_required_runtime_parameters(cls: type[BaseModel]) -> None:
    """Make ``x: RuntimeParameter[T]`` declared *without a default* optional at construction
    and required at run time (distilabel's rule): its default becomes ``None`` and it counts as
    a ``RequiredRuntimeParameter``, so the pipeline refuses to start until it is set."""
    changed = False
    for info in cls.model_fields.values():
        if info.is_required() and any(
            isinstance(m, _RuntimeParameterMarker) for m in info.metadata
        ):
            info.default = None
            info.metadata = [
                _RuntimeParameterMarker(required=True)
                if isinstance(m, _RuntimeParameterMarker)
                else m
                for m in info.metadata
            ]
            changed = True
    if changed:
        cls.model_rebuild(force=True)


class RuntimeParameterDefaults:
    """Mixin for pydantic models: applies :func:`relax_required_runtime_parameters` to every
    subclass when pydantic has built it."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)  # type: ignore[misc]
        assert issubclass(cls, BaseModel)
        relax_required_runtime_parameters(cls)


def _marker(model: type[BaseModel], field: str) -> _RuntimeParameterMarker | None:
    info = model.model_fields[field]
    for meta in info.metadata:
        if isinstance(meta, _RuntimeParameterMarker):
            return meta
    return None


def runtime_parameter_names(model: BaseModel) -> dict[str, Any]:
    """The runtime parameters of ``model``: ``{name: required}``, nested models as dicts."""
    names: dict[str, Any] = {}
    for field in type(model).model_fields:
        marker = _marker(type(model), field)
        if marker is not None:
            names[field] = marker.required
            continue
        value = getattr(model, field, None)
        if isinstance(value, BaseModel):
            nested = runtime_parameter_names(value)
            if nested:
                names[field] = nested
    return names


def set_runtime_parameters(
    model: BaseModel,
    params: dict[str, Any],
    *,
    owner: str,
    unknown: Literal["raise", "warn"] = "raise",
    stacklevel: int = 2,
) -> None:
    """Set runtime parameters from ``params``.

    An unknown name raises :class:`RuntimeParameterError` (``unknown="raise"``) or, with
    ``unknown="warn"`` (what ``Pipeline.run`` does, as distilabel), is ignored with an
    :class:`UnknownRuntimeParameterWarning`; either way the message has a did-you-mean and the
    known names.
    """
    known = runtime_parameter_names(model)
    for key, value in params.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            message = (
                f"{owner} has no runtime parameter {key!r}.{hint} "
                f"Runtime parameters of {owner}: {sorted(known) or 'none'}."
            )
            if unknown == "raise":
                raise RuntimeParameterError(message)
            warnings.warn(
                f"{message} It is ignored; set_runtime_parameters(..., strict=True), or "
                "run(..., strict_parameters=True) in a pipeline, refuses it instead.",
                UnknownRuntimeParameterWarning,
                stacklevel=stacklevel,
            )
            continue
        if isinstance(known[key], dict):
            if not isinstance(value, dict):
                raise RuntimeParameterError(
                    f"Runtime parameter {key!r} of {owner} is a component: give a dict of its "
                    f"parameters {sorted(known[key])}, not {value!r}."
                )
            set_runtime_parameters(
                getattr(model, key),
                value,
                owner=f"{owner}.{key}",
                unknown=unknown,
                stacklevel=stacklevel + 1,
            )
        else:
            try:
                setattr(model, key, value)
            except ValueError as exc:
                raise RuntimeParameterError(
                    f"Invalid value {value!r} for runtime parameter {key!r} of {owner}: {exc}"
                ) from exc


def unknown_policy(
    strict: bool, unknown: Literal["raise", "warn"] | None
) -> Literal["raise", "warn"]:
    """What a direct ``set_runtime_parameters`` call does with an unknown name: warn (as
    distilabel does) unless ``strict``; an explicit ``unknown=`` wins."""
    if unknown is not None:
        return unknown
    return "raise" if strict else "warn"


class RuntimeParameters:
    """``runtime_parameters_names`` and ``set_runtime_parameters`` for a pydantic model whose
    runtime parameters are its own fields (an LLM, an embedding model); a step, which also
    routes names to its LLM, has its own."""

    @property
    def runtime_parameters_names(self) -> dict[str, Any]:
        return runtime_parameter_names(cast(BaseModel, self))

    def set_runtime_parameters(self, params: dict[str, Any], *, strict: bool = False) -> None:
        """Set runtime parameters; an unknown name warns with a did-you-mean (as distilabel
        does), or raises ``RuntimeParameterError`` with ``strict=True``."""
        set_runtime_parameters(
            cast(BaseModel, self),
            params,
            owner=type(self).__name__,
            unknown=unknown_policy(strict, None),
            stacklevel=3,
        )


def missing_required_runtime_parameters(model: BaseModel, prefix: str = "") -> list[str]:
    """Dotted names of required runtime parameters that are still ``None``."""
    missing: list[str] = []
    for name, required in runtime_parameter_names(model).items():
        value = getattr(model, name)
        if isinstance(required, dict):
            missing.extend(missing_required_runtime_parameters(value, f"{prefix}{name}."))
        elif required and value is None:
            missing.append(prefix + name)
    return missing
