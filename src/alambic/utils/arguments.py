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


def misspelt_arguments(given: Iterable[str], known: Iterable[str]) -> list[str]:
    """The unknown names of ``given`` that are a typo of a known one, each as
    ``'name' (did you mean 'field'?)``.

    A typo is at most two edits away (one for names under six characters; an edit is a
    character inserted, deleted, replaced, or two neighbours swapped) or differs only in
    case: ``input_batch_sise`` is one, ``num_instructions`` (an extra argument a custom task
    may be given, far from ``num_generations``) is not.
    """
    names = sorted(known)
    found = []
    for key in given:
        if key in names:
            continue
        best: tuple[int, str] | None = None
        for name in names:
            distance = 0 if key.lower() == name.lower() else _edits(key, name)
            if best is None or distance < best[0]:
                best = (distance, name)
        if best is not None and best[0] <= (2 if len(key) >= 6 else 1):
            found.append(f"{key!r} (did you mean {best[1]!r}?)")
    return found


def _edits(a: str, b: str) -> int:
    """Optimal string alignment distance (edits with adjacent swaps). Written here: the
    standard library has no edit distance and a dependency for fifteen lines is not worth it."""
    if abs(len(a) - len(b)) > 2:
        return 3  # farther than any typo we accept
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


__all__ = ["misspelt_arguments", "unknown_arguments"]
