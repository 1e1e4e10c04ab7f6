"""What several commands share: loading a pipeline from a file, ``--param`` overrides, errors."""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from alambic.errors import AlambicUserError, RuntimeParameterError

if TYPE_CHECKING:
    from alambic.pipeline.base import Pipeline

_FACTORY_NAMES = ("build_pipeline", "create_pipeline", "get_pipeline", "pipeline", "main")


class CLIError(AlambicUserError):
    """A command-line mistake: a file that is not a pipeline, a malformed ``--param``..."""


def fail_message(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _did_you_mean(value: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(value, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def load_pipeline(spec: str, *, allow_modules: list[str] | None = None) -> Pipeline:
    """A pipeline from ``spec``: ``file.py`` (``file.py:name`` picks one), a YAML or JSON file,
    or a Distiset folder holding ``pipeline.yaml``."""
    from alambic.pipeline.serialization import load_file

    path_text, _, attribute = spec.partition(":") if spec.count(":") == 1 else (spec, "", "")
    path = Path(path_text)
    if path.suffix == ".py":
        return _from_python(path, attribute or None)
    if path.is_dir():
        if (path / "pipeline.yaml").is_file():
            return load_file(path / "pipeline.yaml", allow_modules=allow_modules or [])
        raise CLIError(
            f"{path} is a folder without pipeline.yaml: give a pipeline file (.py, .yaml, "
            ".json) or a Distiset folder saved by alambic."
        )
    if not path.exists():
        raise CLIError(f"No file {path}: give a pipeline file (.py, .yaml, .json).")
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise CLIError(
            f"{path} is not a pipeline file: alambic reads .py, .yaml, .yml and .json files."
        )
    return load_file(path, allow_modules=allow_modules or [])


def _from_python(path: Path, attribute: str | None) -> Pipeline:
    from alambic.pipeline.base import Pipeline

    if not path.is_file():
        raise CLIError(f"No file {path}.")
    name = path.stem if path.stem.isidentifier() else "alambic_user_pipeline"
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the file's own imports and saved class paths resolve
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"Cannot import {path} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    members = vars(module)
    if attribute is not None:
        if attribute not in members:
            raise CLIError(f"{path} has no {attribute!r}.{_did_you_mean(attribute, list(members))}")
        candidates = {attribute: members[attribute]}
    else:
        candidates = {k: v for k, v in members.items() if isinstance(v, Pipeline)}
        if not candidates:
            candidates = {
                k: members[k]
                for k in _FACTORY_NAMES
                if inspect.isfunction(members.get(k)) and members[k].__module__ == name
            }
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise CLIError(
            f"{path} must define exactly one module-level Pipeline, or one function named "
            f"{' / '.join(_FACTORY_NAMES)} that returns one (found: {found}). Choose with "
            f"{path}:NAME."
        )
    key, value = next(iter(candidates.items()))
    if callable(value) and not isinstance(value, Pipeline):
        value = value()
    if not isinstance(value, Pipeline):
        raise CLIError(f"{path}:{key} is a {type(value).__name__}, not a Pipeline.")
    return value


def parse_params(pipeline: Pipeline, items: list[str]) -> dict[str, dict[str, Any]]:
    """``step.field=value`` (``step.llm.generation_kwargs=...`` for nested) as run parameters,
    values typed as YAML (``0.7``, ``true``, ``[a, b]``), checked against the steps."""
    params: dict[str, dict[str, Any]] = {}
    steps = list(pipeline.dag.steps)
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise CLIError(
                f"--param {item!r}: write it as STEP.FIELD=VALUE, e.g. "
                f"--param {steps[-1] if steps else 'step'}.input_batch_size=10."
            )
        step_name, *path = parts
        if step_name not in steps:
            raise CLIError(
                f"--param {item!r}: no step {step_name!r}.{_did_you_mean(step_name, steps)} "
                f"Steps: {', '.join(steps)}."
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        obj: Any = pipeline.dag.steps[step_name]
        known: Any = obj.runtime_parameters_names
        owner = step_name
        target = params.setdefault(step_name, {})
        for depth, field in enumerate(path):
            if not isinstance(known, dict) or field not in known:
                choices = sorted(known) if isinstance(known, dict) else []
                raise RuntimeParameterError(
                    f"--param {item!r}: {owner!r} has no runtime parameter {field!r}."
                    f"{_did_you_mean(field, choices)} Runtime parameters of {owner!r}: "
                    f"{', '.join(choices) or 'none'}."
                )
            rest = path[depth + 1 :]
            if not isinstance(known[field], dict) and rest:
                # a dict-valued parameter (generation_kwargs.temperature): merge one key into it
                current = target.get(field, getattr(obj, field, None))
                if current is not None and not isinstance(current, dict):
                    raise CLIError(
                        f"--param {item!r}: {owner}.{field} is {current!r}, not a mapping."
                    )
                merged = dict(current or {})
                inner = merged
                for key in rest[:-1]:
                    inner = inner.setdefault(key, {})
                inner[rest[-1]] = value
                target[field] = merged
                break
            if not rest:
                target[field] = value
                break
            known = known[field]
            obj = getattr(obj, field)
            owner = f"{owner}.{field}"
            target = target.setdefault(field, {})
    return params
