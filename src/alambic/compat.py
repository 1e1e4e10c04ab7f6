"""Run code written for distilabel unchanged: ``import distilabel...`` resolves to alambic.

For scripts you cannot edit, run them through this module::

    python -m alambic.compat old_script.py --its --own --arguments

or install the alias yourself, once, before the first ``distilabel`` import::

    import alambic.compat; alambic.compat.install_distilabel_alias()
    from distilabel.pipeline import Pipeline  # alambic's Pipeline

The alias maps every ``distilabel.<path>`` module to ``alambic.<path>``, through a table for the
modules alambic lays out differently (``distilabel.models.llms`` -> ``alambic.llms``,
``distilabel.steps.tasks.evol_instruct.base`` -> ``alambic.steps.tasks.evol_instruct``, ...),
and the few names alambic spells differently (``merge_distilabel_metadata`` ->
``merge_alambic_metadata``, ``DISTILABEL_METADATA_KEY`` -> ``"alambic_metadata"``). The classes
are alambic's own objects, so ``isinstance`` and subclassing work across both names. It does
nothing when the real distilabel is importable and ``force`` is not set: the alias never
shadows an installed package by surprise.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

ALIAS = "distilabel"

DISTILABEL_METADATA_KEY = "alambic_metadata"
"""The per-row metadata column: distilabel's ``distilabel_metadata`` is ``alambic_metadata``
(``Distiset.with_metadata_column("distilabel_metadata")`` renames it in a result)."""

MODULE_RENAMES: dict[str, str] = {
    "distilabel.models.mixins.magpie": "alambic.llms.magpie",
    "distilabel.models.llms.mixins.magpie": "alambic.llms.magpie",
    "distilabel.llms.mixins.magpie": "alambic.llms.magpie",
    "distilabel.models.llms": "alambic.llms",
    "distilabel.models.embeddings": "alambic.embeddings",
    "distilabel.models": "alambic.llms",
    "distilabel.constants": "alambic.compat",
    "distilabel.steps.tasks.evol_instruct.evol_complexity": "alambic.steps.tasks.evol_complexity",
    "distilabel.steps.tasks.evol_instruct.base": "alambic.steps.tasks.evol_instruct",
    "distilabel.steps.tasks.evol_instruct.generator": "alambic.steps.tasks.evol_instruct",
    "distilabel.steps.tasks.evol_instruct.utils": "alambic.steps.tasks.evol_instruct",
    "distilabel.steps.tasks.evol_quality.base": "alambic.steps.tasks.evol_quality",
    "distilabel.steps.tasks.evol_quality.utils": "alambic.steps.tasks.evol_quality",
    "distilabel.steps.tasks.magpie.base": "alambic.steps.tasks.magpie",
    "distilabel.steps.tasks.magpie.generator": "alambic.steps.tasks.magpie",
    "distilabel.steps.tasks.sentence_transformers": "alambic.steps.tasks.sentence_pair",
    "distilabel.steps.columns.group": "alambic.steps.columns.group",
    "distilabel.steps.columns.merge": "alambic.steps.columns.merge",
    "distilabel.steps.columns.expand": "alambic.steps.columns.expand",
    "distilabel.steps.columns.keep": "alambic.steps.columns.keep",
    "distilabel.steps.formatting.dpo": "alambic.steps.formatting.dpo",
    "distilabel.steps.formatting.sft": "alambic.steps.formatting.sft",
}
"""distilabel module -> alambic module, where the path differs by more than the first word.
The longest matching prefix wins; the rest of the path is kept."""

NAME_RENAMES: dict[str, str] = {
    "merge_distilabel_metadata": "merge_alambic_metadata",
}
"""distilabel attribute -> alambic attribute, looked up on every aliased module."""


def resolve(fullname: str) -> str:
    """The alambic module that ``distilabel.<...>`` module ``fullname`` stands for."""
    for prefix in sorted(MODULE_RENAMES, key=len, reverse=True):
        if fullname == prefix or fullname.startswith(prefix + "."):
            return MODULE_RENAMES[prefix] + fullname[len(prefix) :]
    return "alambic" + fullname[len(ALIAS) :]


class _AliasModule(ModuleType):
    """``distilabel.x``: reads every attribute from ``alambic.x`` (renamed names included)."""

    _target: ModuleType

    def __getattr__(self, name: str) -> Any:
        target = object.__getattribute__(self, "_target")
        try:
            return getattr(target, NAME_RENAMES.get(name, name))
        except AttributeError:
            raise AttributeError(
                f"module {self.__name__!r} (alambic's {target.__name__!r}) has no attribute "
                f"{name!r}; see docs/migrating.md for what alambic names differently."
            ) from None

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._target)) | set(NAME_RENAMES))


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        real = importlib.import_module(self.target)
        module = _AliasModule(spec.name, real.__doc__)
        module._target = real
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None


class DistilabelAliasFinder(importlib.abc.MetaPathFinder):
    """Finds ``distilabel`` and its submodules as aliases of alambic's modules."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        real = resolve(fullname)
        try:
            found = importlib.util.find_spec(real)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return None  # ImportError names the distilabel module, as it should
        # every alias is a package with no folder of its own: its submodules (even of a plain
        # alambic module, e.g. distilabel.steps.tasks.evol_instruct.base) come through this
        # finder, never as a second copy of an alambic file loaded under a distilabel name
        spec = importlib.machinery.ModuleSpec(fullname, _AliasLoader(real), is_package=True)
        spec.submodule_search_locations = []
        return spec


def install_distilabel_alias(*, force: bool = False) -> bool:
    """Make ``import distilabel...`` load alambic; ``True`` if the alias is (now) installed.

    Without ``force``, nothing happens when a real ``distilabel`` is importable.
    """
    if any(isinstance(f, DistilabelAliasFinder) for f in sys.meta_path):
        return True
    if not force and ALIAS not in sys.modules and importlib.util.find_spec(ALIAS) is not None:
        return False
    sys.meta_path.insert(0, DistilabelAliasFinder())
    return True


def uninstall_distilabel_alias() -> None:
    """Remove the alias and forget the ``distilabel`` modules it created."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, DistilabelAliasFinder)]
    for name in [n for n in sys.modules if n == ALIAS or n.startswith(ALIAS + ".")]:
        if isinstance(sys.modules[name], _AliasModule):
            del sys.modules[name]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m alambic.compat script.py [args...]``: run a distilabel script on alambic."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(
            "usage: python -m alambic.compat SCRIPT.py [ARGS...]\n"
            "       python -m alambic.compat -m MODULE [ARGS...]\n"
            "Runs a script written for distilabel with `import distilabel` resolved to alambic."
        )
        return 0 if args else 2
    install_distilabel_alias(force=True)
    if args[0] == "-m" and len(args) > 1:
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")
    return 0


__all__ = [
    "DISTILABEL_METADATA_KEY",
    "MODULE_RENAMES",
    "NAME_RENAMES",
    "DistilabelAliasFinder",
    "install_distilabel_alias",
    "resolve",
    "uninstall_distilabel_alias",
]


if __name__ == "__main__":
    raise SystemExit(main())
