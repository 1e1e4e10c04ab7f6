"""The prompt templates of the built-in tasks: Jinja2 files under ``templates/<task>/``.

Templates are package data (they ship in the wheel next to this module) and are read through
``importlib.resources``, so they work from a zip or an installed wheel too.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2

__all__ = ["render", "template_source"]

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def template_source(task: str, name: str) -> str:
    """The text of ``templates/<task>/<name>.jinja2``."""
    path = resources.files("alambic.steps.tasks").joinpath("templates", task, f"{name}.jinja2")
    return path.read_text(encoding="utf-8")


@cache
def _compiled(task: str, name: str) -> jinja2.Template:
    return _ENV.from_string(template_source(task, name))


def render(task: str, name: str, **values: Any) -> str:
    """Render a built-in template; a missing placeholder raises ``jinja2.UndefinedError``."""
    return _compiled(task, name).render(**values).strip()
