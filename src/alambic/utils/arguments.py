"""Naming the arguments a component does not have, with the closest one it does."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_arguments(given: Iterable[str], known: Iterable[str]) -> tuple[list[str], str]:
    """The unknown names of ``given`` (each with a did-you-mean where one is close) and the
    sentence listing what exists; ``([], "")`` when every name is known."""
    names = sorted(known)
    hints = []
    for key in given:
        if key in names:
            continue
        close = difflib.get_close_matches(key, names, n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return hints, (f"Its arguments are: {', '.join(names)}." if hints else "")


__all__ = ["unknown_arguments"]
