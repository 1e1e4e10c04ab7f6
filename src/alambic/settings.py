"""Every ``ALAMBIC_*`` environment variable alambic reads, in one place.

Each setting is a function that reads the environment when called (so a test or a user can
change a variable between two runs in one process). A value that cannot be used raises a
:class:`~alambic.errors.AlambicUserError` naming the variable, the value and what is allowed.

=============================  ===========  =====================================================
Variable                       Default      Meaning
=============================  ===========  =====================================================
``ALAMBIC_CACHE_DIR``          ``~/.cache/  Where run stores and the request cache live.
                               alambic``
``ALAMBIC_REQUEST_CACHE``      ``1``        ``0`` turns the request cache off (every request
                                            is sent; the run store still resumes).
``ALAMBIC_SHARE_REQUEST_CACHE`` ``1``       ``0``: one request cache per pipeline folder
                                            instead of one shared by every pipeline.
``ALAMBIC_LOCK_TIMEOUT``       ``0``        Seconds to wait for another process's lock on a
                                            pipeline's store before giving up.
``ALAMBIC_STORE_SYNC``         ``NORMAL``   ``FULL`` fsyncs every commit (safe against power
                                            loss, slower).
``ALAMBIC_PROGRESS_INTERVAL``  ``5``        Seconds between two progress lines when output is
                                            piped (not a terminal).
``ALAMBIC_DISK_RESERVE_MB``    ``8``        Space kept in the cache folder, freed when the disk
                                            fills so answers already received are written
                                            (``0``: no reserve).
``ALAMBIC_GC_TUNING``          ``1``        ``0`` leaves Python's garbage collector as it is
                                            during a run (see ``executor.lifecycle``).
``ALAMBIC_EVENT_LOOP``         ``uvloop``   The event loop of a pipeline run: ``uvloop`` (where
                                            installed; else asyncio's) or ``asyncio``.
=============================  ===========  =====================================================
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from alambic.errors import AlambicUserError, StoreError

_FALSE = ("0", "false", "no", "off")
_TRUE = ("1", "true", "yes", "on")


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in _FALSE:
        return False
    if value in _TRUE:
        return True
    raise AlambicUserError(
        f"{name}={raw!r} is not a valid setting: use one of {', '.join(_TRUE + _FALSE)}."
    )


def cache_dir() -> Path:
    """``$ALAMBIC_CACHE_DIR`` if set, else ``~/.cache/alambic``."""
    configured = os.environ.get("ALAMBIC_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "alambic"


def request_cache_enabled() -> bool:
    """``ALAMBIC_REQUEST_CACHE`` (default on)."""
    return _flag("ALAMBIC_REQUEST_CACHE", True)


def share_request_cache() -> bool:
    """``ALAMBIC_SHARE_REQUEST_CACHE`` (default on: one cache for every pipeline)."""
    return _flag("ALAMBIC_SHARE_REQUEST_CACHE", True)


def gc_tuning() -> bool:
    """``ALAMBIC_GC_TUNING`` (default on: a run freezes the heap it starts with and collects
    its young objects less often)."""
    return _flag("ALAMBIC_GC_TUNING", True)


def event_loop() -> str:
    """``uvloop`` (default: a run's loop is uvloop's where it is installed) or ``asyncio``
    from ``ALAMBIC_EVENT_LOOP``."""
    raw = os.environ.get("ALAMBIC_EVENT_LOOP", "")
    value = raw.strip().lower() or "uvloop"
    if value not in ("uvloop", "asyncio"):
        raise AlambicUserError(
            f"ALAMBIC_EVENT_LOOP={raw!r} is not a valid setting: use uvloop (the default, "
            "faster where installed) or asyncio (the standard library's loop)."
        )
    return value


def _number(name: str, default: str, *, positive: bool, give: str, example: str) -> float:
    """A number from ``name`` (``default`` when unset or blank): ``>= 0``, or ``> 0`` with
    ``positive``; anything else raises with the variable, the bad value and an example."""
    raw = os.environ.get(name, default).strip() or default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan  # fails both comparisons below
    if not (value > 0 if positive else value >= 0):
        raise AlambicUserError(
            f"{name}={raw!r} is not a valid setting: give {give} (e.g. {name}={example})."
        )
    return value


def lock_timeout() -> float:
    """``ALAMBIC_LOCK_TIMEOUT`` in seconds (default 0: fail at once when locked)."""
    return _number(
        "ALAMBIC_LOCK_TIMEOUT", "0", positive=False, give="a number of seconds >= 0", example="30"
    )


def store_sync() -> str:
    """``NORMAL`` (default) or ``FULL`` from ``ALAMBIC_STORE_SYNC``."""
    mode = os.environ.get("ALAMBIC_STORE_SYNC", "NORMAL").strip().upper()
    if mode not in ("NORMAL", "FULL"):
        raise StoreError(
            f"ALAMBIC_STORE_SYNC={mode!r} is not a valid setting: use NORMAL (safe against "
            "process crashes, the default) or FULL (also against power loss, slower)."
        )
    return mode


def progress_interval() -> float:
    """``ALAMBIC_PROGRESS_INTERVAL`` in seconds (default 5): the pace of piped progress lines."""
    return _number(
        "ALAMBIC_PROGRESS_INTERVAL",
        "5",
        positive=True,
        give="a number of seconds > 0",
        example="30",
    )


def disk_reserve_bytes() -> int:
    """``ALAMBIC_DISK_RESERVE_MB`` in bytes (default 8 MiB; 0 turns the reserve off)."""
    value = _number(
        "ALAMBIC_DISK_RESERVE_MB",
        "8",
        positive=False,
        give="a number of MiB >= 0",
        example="32; 0 runs without a reserve",
    )
    return int(value * 1024 * 1024)


__all__ = [
    "cache_dir",
    "disk_reserve_bytes",
    "lock_timeout",
    "progress_interval",
    "request_cache_enabled",
    "share_request_cache",
    "store_sync",
]
