"""Turning steps and LLMs into plain data (for YAML, signatures and dataset cards) and back.

Secrets never leave the process: a ``SecretStr`` is written as a mask, so a serialized pipeline
can be pushed to the Hub or hashed into a cache key without leaking an API key.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
from collections.abc import Callable, Hashable, Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

SECRET_MASK = "**********"

T = TypeVar("T")

_RUN_MEMO: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "alambic_run_memo", default=None
)


@contextlib.contextmanager
def memoized_dumps() -> Iterator[None]:
    """Within this block (a pipeline's run), what a component's ``dump`` computes at length
    may be computed once: a run dumps its steps four times before its first row (two
    signatures, the run store's YAML and record) and once more for the dataset card, and
    the digest of a large in-memory dataset took 0.8 s per million rows each time. Outside
    the block nothing is remembered, so a run always sees its data as they are when it
    starts."""
    token = _RUN_MEMO.set({})
    try:
        yield
    finally:
        _RUN_MEMO.reset(token)


def memoized(key: Hashable, compute: Callable[[], T], *, keep: Any = None) -> T:
    """``compute()``, once per ``key`` within a :func:`memoized_dumps` block (each time outside
    one). ``keep`` is held with the result: an object whose ``id`` is part of the key then
    stays alive, so its ``id`` cannot be another object's while the block lasts."""
    memo = _RUN_MEMO.get()
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = (keep, compute())
    result: T = memo[key][1]
    return result


def dump_value(value: Any) -> Any:
    """A JSON-able form of ``value``: components keep their class so they can be rebuilt."""
    if isinstance(value, SecretStr):
        return SECRET_MASK
    if isinstance(value, BaseModel):
        return dump_component(value)
    if isinstance(value, Mapping):
        return {str(k): dump_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [dump_value(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, type):
        return {"type_info": {"module": value.__module__, "name": value.__qualname__}}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def dump_component(obj: BaseModel, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``{"type_info": {...}, <field>: <value>...}`` for a pydantic component."""
    cls = type(obj)
    data: dict[str, Any] = {"type_info": {"module": cls.__module__, "name": cls.__qualname__}}
    for name, info in cls.model_fields.items():
        if info.exclude or name in exclude:
            continue
        data[name] = dump_value(getattr(obj, name))
    return data


def _load_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "type_info" in value:
            return load_component(value)
        return {k: _load_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_load_value(v) for v in value]
    return value


def load_component(data: Mapping[str, Any]) -> Any:
    """Rebuild what ``dump_component`` wrote; masked secrets are left for the environment."""
    info = data["type_info"]
    module = importlib.import_module(info["module"])
    cls: Any = module
    for part in info["name"].split("."):
        cls = getattr(cls, part)
    if len(data) == 1:
        return cls
    kwargs = {k: _load_value(v) for k, v in data.items() if k != "type_info" and v != SECRET_MASK}
    return cls(**kwargs)
