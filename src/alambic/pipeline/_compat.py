"""Parts of distilabel's public ``Pipeline`` API that alambic keeps for code written against it:
an optional (derived) name, ``signature`` as a property, ``requirements=`` with
``requirements_to_install()``, and ``get_runtime_parameters_info()``.

Mixed into ``alambic.pipeline.base.Pipeline``.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from pathlib import Path
from typing import Any

from alambic.errors import AlambicError


class MissingRequirementsError(AlambicError, ModuleNotFoundError):
    """A pipeline declares ``requirements=`` that are not installed (raised before it runs)."""


class Signature(str):
    """The pipeline's signature: a ``str`` (distilabel's property) that can also be called,
    as alambic's ``pipeline.signature()`` was, and returns itself."""

    __slots__ = ()

    def __call__(self) -> str:
        return str(self)


def derive_pipeline_name(depth: int = 2) -> str:
    """A name for a ``Pipeline()`` created without one: the creating script's file name
    (``my_pipeline.py`` -> ``my_pipeline``), so the same script resumes the same run;
    ``pipeline`` from an interactive session."""
    frame = inspect.currentframe()
    try:
        for _ in range(depth):
            frame = frame.f_back if frame is not None else None
        filename = frame.f_code.co_filename if frame is not None else ""
    finally:
        del frame
    stem = Path(filename).stem if filename and not filename.startswith("<") else ""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")
    return cleaned or "pipeline"


def missing_requirements(requirements: list[str]) -> list[str]:
    """The PEP 508 requirement strings of ``requirements`` not satisfied here."""
    if not requirements:  # most pipelines: no parser to import before the run can start
        return []
    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise ValueError(
                f"Pipeline requirement {text!r} is not a valid requirement ({exc}); write it "
                "as pip would read it, e.g. 'numpy>=1.26'."
            ) from exc
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


class PipelineCompatMixin:
    """distilabel's pipeline introspection, on top of alambic's ``Pipeline``."""

    requirements: list[str]
    name: str

    @property
    def steps(self) -> dict[str, Any]:
        raise NotImplementedError

    def requirements_to_install(self) -> list[str]:
        """The declared ``requirements`` that are not installed (or not in a matching
        version) here."""
        return missing_requirements(self.requirements)

    def check_requirements(self) -> None:
        """Raise before anything runs when a declared requirement is missing."""
        missing = self.requirements_to_install()
        if missing:
            quoted = " ".join(f"'{m}'" for m in missing)
            raise MissingRequirementsError(
                f"Pipeline {self.name!r} requires {missing}, not installed here (nothing was "
                f"run). Install them with: pip install {quoted}"
            )

    def get_runtime_parameters_info(self) -> dict[str, list[dict[str, Any]]]:
        """Step name -> that step's ``get_runtime_parameters_info()``."""
        return {name: step.get_runtime_parameters_info() for name, step in self.steps.items()}


__all__ = [
    "MissingRequirementsError",
    "PipelineCompatMixin",
    "Signature",
    "derive_pipeline_name",
    "missing_requirements",
]
