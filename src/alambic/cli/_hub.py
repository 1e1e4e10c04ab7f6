"""Pushing to the Hugging Face Hub with errors that say what failed, why, and the fix."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from alambic.errors import AlambicError

if TYPE_CHECKING:
    from alambic.distiset import Distiset


class HubError(AlambicError, RuntimeError):
    """A push to the Hub failed; the message names the repo, the reason and the fix."""


def explain(exc: BaseException, repo_id: str) -> str:
    """One paragraph for a failed push of ``repo_id``: what failed, why, the fix."""
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:300] if str(exc) else name
    status = getattr(getattr(exc, "response", None), "status_code", None)
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    what = f"Pushing the dataset to {repo_id!r} on {endpoint} failed"
    if name == "OfflineModeIsEnabled" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return (
            f"{what}: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE=1). Unset "
            "HF_HUB_OFFLINE to push, or save the dataset locally with --output DIR."
        )
    if name in ("ConnectError", "ConnectionError", "ConnectTimeout", "NewConnectionError") or (
        isinstance(exc, OSError) and status is None
    ):
        return (
            f"{what}: the Hub cannot be reached ({name}: {text}). Check the network (or "
            "HF_ENDPOINT), then push the saved dataset again; save it locally with --output "
            "DIR so nothing is lost."
        )
    if status == 401 or name in ("LocalTokenNotFoundError",):
        return (
            f"{what}: no valid token ({text}). Log in with `hf auth login` or set HF_TOKEN "
            "to a token with write access."
        )
    if status == 403:
        return (
            f"{what}: the token may not write to {repo_id!r} ({text}). Use a token with write "
            "access to that namespace, or push to your own namespace (you/name)."
        )
    if status == 409:
        return f"{what}: the repo exists with another type or a conflicting commit ({text})."
    if status == 404:
        return f"{what}: {repo_id!r} or its namespace was not found ({text}). Check the name."
    return f"{what}: {name}: {text}"


def push(distiset: Distiset, repo_id: str, *, private: bool = False) -> str:
    try:
        return distiset.push_to_hub(repo_id, private=private)
    except AlambicError:
        raise
    except Exception as exc:  # every library error becomes one message with the fix
        raise HubError(explain(exc, repo_id)) from exc
