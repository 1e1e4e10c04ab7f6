"""Lazy exports for package ``__init__`` files: names imported from their module on first use.

Keeps ``import alambic`` fast (a provider's SDK, torch or datasets load only when a class that
needs them is first touched). In a package ``__init__``::

    _LAZY = {"OpenAILLM": "alambic.llms.openai", ...}
    __getattr__, __dir__ = lazy_exports(globals(), _LAZY)

with the same names imported under ``if TYPE_CHECKING:`` for type checkers and editors.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], table: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package exporting ``table``
    (name -> module that defines it); ``__dir__`` lists the package's ``__all__``."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", ()))

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
