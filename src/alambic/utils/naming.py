"""Names of steps and pipelines."""

from __future__ import annotations

import re

from alambic.errors import InvalidNameError

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def validate_name(name: str, *, what: str = "step", owner: str | None = None) -> str:
    """Return ``name`` if it can be used as a column suffix, a file name and a YAML key.

    Otherwise raise :class:`InvalidNameError` (also pydantic's ``ValidationError``, titled
    ``owner``: the step's class name, or ``"Pipeline"``).
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        suggestion = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_") or what
        raise InvalidNameError.for_name(
            owner or what.capitalize(),
            name,
            f"Invalid {what} name {name!r}: use only letters, digits, '_' and '-' "
            f"(for example {suggestion!r}).",
        )
    return name


def snake_case(class_name: str) -> str:
    """``TextGeneration`` -> ``text_generation``; ``LLMJudge`` -> ``llm_judge``."""
    return _CAMEL_RE.sub("_", class_name).lower()
