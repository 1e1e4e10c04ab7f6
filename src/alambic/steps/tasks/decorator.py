"""``@task``: a Task from one function, as distilabel's ``task`` decorator builds it.

The decorated function is the task's ``format_output(output, input)``; its docstring holds
the prompt between two ``---`` lines, as YAML with ``system_prompt`` and
``user_message_template`` (``str.format`` placeholders naming input columns)::

    @task(inputs=["topic"], outputs=["slogan"])
    def Slogan(output: str | None, input: dict | None = None) -> dict:
        '''Write a slogan.

        ---
        system_prompt: You write short advertising slogans.
        user_message_template: A slogan about {topic}, in one line.
        ---
        '''
        return {"slogan": output.strip() if output else None}

    Slogan(llm=OpenAILLM(model="gpt-4o-mini"))

A placeholder that is not an input column is an error when the class is created, not when
the first row is formatted.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable
from typing import Any

import yaml

from alambic.errors import AlambicUserError
from alambic.llms.typing import FormattedInput
from alambic.steps.base import normalize_columns
from alambic.steps.tasks.base import Task
from alambic.steps.typing import StepColumns

FormatOutput = Callable[..., dict[str, Any]]

_KEYS = ("system_prompt", "user_message_template")
_FORMAT_HELP = (
    "Its docstring must hold, between two '---' lines, YAML with 'system_prompt' and "
    "'user_message_template', e.g.\n    ---\n    system_prompt: You are helpful.\n"
    "    user_message_template: Answer {instruction}\n    ---"
)


def task(
    inputs: StepColumns | None = None, outputs: StepColumns | None = None
) -> Callable[[FormatOutput], type[Task]]:
    """Turn a ``format_output`` function with a prompt in its docstring into a Task class."""
    declared_inputs: StepColumns = inputs or []
    declared_outputs: StepColumns = outputs or []

    def decorator(func: FormatOutput) -> type[Task]:
        system_prompt, user_template = read_prompts(func)
        allowed = set(normalize_columns(declared_inputs))
        for label, template in (
            ("system_prompt", system_prompt),
            ("user_message_template", user_template),
        ):
            unknown = sorted(_placeholders(template) - allowed)
            if unknown:
                raise AlambicUserError(
                    f"@task {func.__name__}: the {label} uses {unknown}, which are not input "
                    f"columns; the inputs are {sorted(allowed)}. Add them to inputs= or fix "
                    "the placeholders."
                )

        def format_input(self: Task, input: dict[str, Any]) -> FormattedInput:
            return [
                {"role": "system", "content": system_prompt.format(**input)},
                {"role": "user", "content": user_template.format(**input)},
            ]

        def format_output(
            self: Task, output: str | None, input: dict[str, Any] | None = None
        ) -> dict[str, Any]:
            return func(output, input)

        namespace: dict[str, Any] = {
            "__module__": func.__module__,
            "__doc__": inspect.getdoc(func),
            "inputs": property(lambda self: declared_inputs),
            "outputs": property(lambda self: declared_outputs),
            "format_input": format_input,
            "format_output": format_output,
        }
        return type(func.__name__, (Task,), namespace)

    return decorator


def read_prompts(func: Callable[..., Any]) -> tuple[str, str]:
    """``(system_prompt, user_message_template)`` from ``func``'s docstring."""
    doc = inspect.getdoc(func)
    if not doc:
        raise AlambicUserError(f"@task {func.__name__} has no docstring. {_FORMAT_HELP}")
    parts = doc.split("---")
    if len(parts) != 3:
        raise AlambicUserError(
            f"@task {func.__name__}: found {len(parts) - 1} '---' lines, not 2. {_FORMAT_HELP}"
        )
    try:
        data = yaml.safe_load(parts[1])
    except yaml.YAMLError as exc:
        raise AlambicUserError(
            f"@task {func.__name__}: the prompt block is not valid YAML ({exc}). {_FORMAT_HELP}"
        ) from exc
    if not isinstance(data, dict) or any(not isinstance(data.get(k), str) for k in _KEYS):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise AlambicUserError(
            f"@task {func.__name__}: the prompt block needs both {list(_KEYS)} as text; "
            f"found {found}. {_FORMAT_HELP}"
        )
    return data["system_prompt"].strip(), data["user_message_template"].strip()


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


__all__ = ["task"]
