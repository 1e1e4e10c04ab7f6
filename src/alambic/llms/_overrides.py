"""Custom LLMs written the way distilabel documents them.

distilabel's guide has users subclass ``AsyncLLM`` and override the *public*
``async def agenerate(self, input, num_generations=1, **kwargs)``. In alambic the public
``agenerate`` is the base's: it consults the request cache, fans out ``num_generations``,
validates structured output and sends each request through the scheduler (concurrency, rate
limits, retries, failures kept as data), and the one-request hook a client implements is
``_agenerate``. ``adopt_agenerate_override`` reconciles the two when a subclass is created: a
class that defines ``agenerate`` but not ``_agenerate`` has its method moved to
``_agenerate`` (adapted to return a ``GenerateOutput``), and the base's ``agenerate`` is put
back, so the user's code runs under the scheduler, the cache and the failure handling like a
built-in client.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from alambic.llms.typing import FormattedInput, GenerateOutput

USER_AGENERATE = "_user_agenerate"
"""Where the user's own ``agenerate`` is kept on the class."""


def as_generate_output(value: Any, n: int) -> GenerateOutput:
    """A user's return value as a ``GenerateOutput``: a ``GenerateOutput`` dict (token counts
    filled with ``None`` where missing), a list of texts, or one text."""
    if isinstance(value, dict) and "generations" in value:
        texts = list(value["generations"])
        stats = value.get("statistics") or {}
    else:
        texts = list(value) if isinstance(value, (list, tuple)) else [value]
        stats = {}
    count = len(texts)

    def tokens(key: str) -> list[int | None]:
        found = stats.get(key)
        if isinstance(found, list) and len(found) == count:
            return found
        if isinstance(found, int):  # one count for the whole request: spread it
            return [found] * count
        return [None] * count

    out: GenerateOutput = {
        "generations": texts,
        "statistics": {
            "input_tokens": tokens("input_tokens"),
            "output_tokens": tokens("output_tokens"),
        },
    }
    return out


def adopt_agenerate_override(cls: type, base: type) -> None:
    """Move a subclass's own ``agenerate`` to ``_agenerate`` (see the module docstring)."""
    own = cls.__dict__.get("agenerate")
    if own is None or own is base.__dict__.get("agenerate") or "_agenerate" in cls.__dict__:
        return
    if not inspect.iscoroutinefunction(own):
        raise TypeError(
            f"{cls.__name__}.agenerate must be 'async def agenerate(self, input, "
            "num_generations=1, **kwargs)'; for a synchronous client subclass LLM and override "
            "generate() instead."
        )
    user: Callable[..., Coroutine[Any, Any, Any]] = own

    @functools.wraps(user)
    async def _agenerate(
        self: Any, input: FormattedInput, num_generations: int, **generation_kwargs: Any
    ) -> GenerateOutput:
        value = await user(self, input, num_generations=num_generations, **generation_kwargs)
        return as_generate_output(value, num_generations)

    setattr(cls, USER_AGENERATE, user)
    setattr(cls, "_agenerate", _agenerate)  # noqa: B010
    setattr(cls, "agenerate", base.__dict__["agenerate"])  # noqa: B010


__all__ = ["USER_AGENERATE", "adopt_agenerate_override", "as_generate_output"]
