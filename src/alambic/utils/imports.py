"""Importing optional packages with an error that says what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from alambic.errors import MissingDependencyError


def require(module: str, *, feature: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise the exact ``pip install "alambic[extra]"`` to run."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(feature, package or module.split(".")[0], extra) from exc
