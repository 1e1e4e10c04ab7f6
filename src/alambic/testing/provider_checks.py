"""Checks every SDK-backed provider must pass, shared by alambic's provider tests and
usable by anyone writing a provider: a missing SDK names the extra to install, a missing key
names the variable to set. The checks need ``pytest``, imported when one runs (this module
ships in the wheel, where pytest may be absent)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from alambic.errors import MissingAPIKeyError, MissingDependencyError
from alambic.llms.base import AsyncLLM

if TYPE_CHECKING:
    import pytest

HELLO = [{"role": "user", "content": "hello there"}]


def check_missing_sdk(
    monkeypatch: pytest.MonkeyPatch, llm: AsyncLLM, module: str, extra: str
) -> None:
    import pytest

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError) as info:
        llm.load()
    assert f'pip install "alambic[{extra}]"' in str(info.value)
    assert type(llm).__name__ in str(info.value)


def check_missing_key(monkeypatch: pytest.MonkeyPatch, llm: AsyncLLM, env_var: str) -> None:
    import pytest

    monkeypatch.delenv(env_var, raising=False)
    with pytest.raises(MissingAPIKeyError) as info:
        llm.load()
    assert env_var in str(info.value)


__all__ = ["HELLO", "check_missing_key", "check_missing_sdk", "fast"]


def fast(llm: Any) -> Any:
    """Speed the scheduler's backoff up for retry tests."""
    llm.scheduler.limits.backoff_base = 0.01
    return llm
