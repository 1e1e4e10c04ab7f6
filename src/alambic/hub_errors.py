"""Errors of the Hugging Face Hub, said once, with the repo, the cause and the fix.

``huggingface_hub`` reports an offline machine, an unreachable endpoint or a missing token as
a long chain of ``httpx``/``requests`` exceptions. :func:`hub_errors` turns any of them into
one :class:`~alambic.errors.HubError` (the original chained as ``__cause__``); both
``Distiset.push_to_hub`` and ``alambic run --push-to-hub`` go through it. The token is never
part of the message: it is redacted, like every key alambic knows of.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from alambic.errors import AlambicError, HubError
from alambic.redaction import redact

__all__ = ["HubError", "explain", "hub_errors"]

_SAVE = (
    "save it locally first (distiset.save_to_disk(DIR), or --output DIR with `alambic run`) "
    "so nothing is lost"
)
_UNREACHABLE = frozenset(
    {
        "ConnectError",
        "ConnectionError",
        "ConnectTimeout",
        "NewConnectionError",
        "ReadTimeout",
        "Timeout",
        "MaxRetryError",
    }
)


def explain(
    exc: BaseException, repo_id: str, *, endpoint: str | None = None, token: str | None = None
) -> str:
    """One paragraph for a failed push of ``repo_id``: what failed, why, the fix."""
    name = type(exc).__name__
    first = str(exc).splitlines()[0][:300] if str(exc).strip() else name
    text = redact(first.replace(token, "[REDACTED]") if token else first)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    where = endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    what = f"Pushing the dataset to {repo_id!r} on {where} failed"
    if name == "OfflineModeIsEnabled" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return (
            f"{what}: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1). Unset "
            f"HF_HUB_OFFLINE to push, or save the dataset locally with --output DIR "
            "(distiset.save_to_disk(DIR) in Python)."
        )
    network = isinstance(exc, OSError) and status is None and exc.errno is None  # not a disk
    if name in _UNREACHABLE or network:
        return (
            f"{what}: the Hub cannot be reached ({name}: {text}). Check the network (or "
            f"HF_ENDPOINT), then push again; {_SAVE}."
        )
    if status == 401 or name == "LocalTokenNotFoundError":
        return (
            f"{what}: no valid token ({text}). Log in with `hf auth login` or set HF_TOKEN "
            "(or pass token=...) to a token with write access."
        )
    if status == 403:
        return (
            f"{what}: the token may not write to {repo_id!r} ({text}). Use a token with write "
            "access to that namespace, or push to your own namespace (you/name)."
        )
    if status == 409:
        return (
            f"{what}: the repo exists with another type or a conflicting commit ({text}). "
            "Choose another repo name, or pass revision=... for a branch."
        )
    if status == 404:
        return f"{what}: {repo_id!r} or its namespace was not found ({text}). Check the name."
    return f"{what}: {name}: {text}"


@contextlib.contextmanager
def hub_errors(
    repo_id: str, *, endpoint: str | None = None, token: str | None = None
) -> Iterator[None]:
    """Run a Hub operation on ``repo_id``; a library error becomes one :class:`HubError`."""
    try:
        yield
    except AlambicError:
        raise
    except Exception as exc:  # every library error becomes one message with the fix
        raise HubError(explain(exc, repo_id, endpoint=endpoint, token=token)) from exc
