"""Jinja2 prompt templates: the built-in tasks' files under ``templates/<task>/`` and users'.

Every template alambic renders goes through :func:`sandboxed_environment`: Jinja's immutable
sandbox, so a template (a user's, or one loaded from a shared YAML pipeline) can read the
values it is given but cannot walk attributes such as ``__class__`` / ``__subclasses__`` to
reach ``os`` or mutate the values. :func:`check_template` refuses such a template before any
token is spent, and :func:`render_checked` turns a sandbox refusal at render time into a
:class:`~alambic.errors.TemplateError` that says what was refused and why.

Templates are package data (they ship in the wheel next to this module) and are read through
``importlib.resources``, so they work from a zip or an installed wheel too.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from alambic.errors import TemplateError

__all__ = [
    "check_template",
    "packaged_template",
    "render",
    "render_checked",
    "render_source",
    "render_user_template",
    "sandboxed_environment",
    "template_source",
]


def sandboxed_environment(
    *, keep_trailing_newline: bool = False, trim_blocks: bool = True
) -> jinja2.Environment:
    """The Jinja2 environment every alambic template renders in (immutable sandbox).

    ``trim_blocks`` also sets ``lstrip_blocks`` (the built-in templates use both; a user's
    ``TextGeneration`` template keeps its whitespace as written).
    """
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=keep_trailing_newline,
        trim_blocks=trim_blocks,
        lstrip_blocks=trim_blocks,
        autoescape=False,
    )


_ENV = sandboxed_environment()


def _const_text(node: nodes.Node | None) -> str:
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        return node.value
    return ""


def _private_names(tree: nodes.Node) -> list[str]:
    found: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem):
            name = _const_text(node.arg)
        elif isinstance(node, nodes.Name):
            name = node.name
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            name = _const_text(node.args[0])
        else:
            name = ""
        if name.startswith("_"):
            found.append(name)
    return found


def check_template(
    source: str, *, owner: str, env: jinja2.Environment | None = None
) -> jinja2.Template:
    """Compile ``source`` in the sandbox, refusing syntax errors and private-attribute access.

    ``owner`` names the step for the error (``"Step 'gen' (TextGeneration)"``); ``env`` is a
    :func:`sandboxed_environment` with other whitespace options.
    """
    env = env or _ENV
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{owner}: the template is not valid Jinja2 ({exc}).") from exc
    private = sorted(set(_private_names(tree)))
    if private:
        raise TemplateError(
            f"{owner}: the template reaches private names {private}. Templates render in a "
            "sandbox and may only read the values they are given (columns, their items and "
            "public attributes); remove those names from the template."
        )
    return env.from_string(source)


def render_checked(template: jinja2.Template, values: dict[str, Any], *, owner: str) -> str:
    """Render ``template``; a sandbox refusal becomes a :class:`TemplateError` naming it."""
    try:
        return template.render(**values)
    except SecurityError as exc:
        raise TemplateError(
            f"{owner}: the template was refused by the sandbox ({exc}). Templates may only "
            "read the values they are given; calling methods that change them or reaching "
            "internals (__class__, __globals__, ...) is not allowed."
        ) from exc


def template_source(task: str, name: str) -> str:
    """The text of ``templates/<task>/<name>.jinja2`` (``templates/<name>.jinja2`` when
    ``task`` is empty: the files named as distilabel names them, e.g.
    ``complexity-scorer.jinja2``)."""
    parts = ["templates", *(task.split("/") if task else []), f"{name}.jinja2"]
    path = resources.files("alambic.steps.tasks").joinpath(*parts)
    return path.read_text(encoding="utf-8")


@cache
def _compiled(task: str, name: str) -> jinja2.Template:
    return _ENV.from_string(template_source(task, name))


@cache
def _compiled_source(source: str, owner: str) -> jinja2.Template:
    return check_template(source, owner=owner)


def render_source(source: str, /, *, owner: str, **values: Any) -> str:
    """Render template text (a module constant a user may have replaced), checked once."""
    return render_checked(_compiled_source(source, owner), values, owner=owner).strip()


def packaged_template(task: str, name: str) -> jinja2.Template:
    """The compiled ``templates/<task>/<name>.jinja2`` (sandboxed), cached."""
    return _compiled(task, name)


def render_user_template(template: Any, values: dict[str, Any], *, owner: str) -> str:
    """Render a task's ``_template``: a ``jinja2.Template`` (a user's, or the packaged one) or
    template text (checked in the sandbox). A missing variable raises, naming those given."""
    if isinstance(template, str):
        template = _compiled_source(template, owner)
    if not isinstance(template, jinja2.Template):
        raise TemplateError(
            f"{owner}: _template must be a jinja2.Template or template text, got "
            f"{type(template).__name__}. Assign one in load(), e.g. "
            "self._template = Template('... {{ instruction }} ...')."
        )
    try:
        return render_checked(template, values, owner=owner).strip()
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"{owner}: the task's _template uses a variable it is not given ({exc}); the "
            f"variables are {sorted(values)}."
        ) from exc


def render(task: str, name: str, /, **values: Any) -> str:
    """Render a built-in template; a missing placeholder raises ``jinja2.UndefinedError``."""
    return render_checked(_compiled(task, name), values, owner=f"Template {task}/{name}").strip()
