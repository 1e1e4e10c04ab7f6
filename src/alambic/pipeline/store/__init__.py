"""The run store: what makes runs resumable and LLM requests never paid twice.

Everything lives under the cache directory (``$ALAMBIC_CACHE_DIR``, default
``~/.cache/alambic``)::

    <cache_dir>/
        requests.sqlite                          answered LLM requests, shared (RequestCacheStore)
        pipelines/<name>-<signature[:16]>/       one folder per pipeline definition (RunStore)
            store.sqlite                         runs, steps, committed batches ("units")
            run.lock                             held by the process running the pipeline
            data/<leaf step>/                    leaf outputs, written as the run goes

Both files are SQLite databases in WAL mode, written by a background thread with group
commit, so committing a batch costs the caller tens of microseconds and a crash at any
instant leaves every batch either whole or absent. ``docs/resume.md`` has the details and
measured costs.
"""

from __future__ import annotations

from alambic.errors import StoreError
from alambic.pipeline.store.request_cache import (
    REQUEST_CACHE_FILENAME,
    RequestCacheStore,
    request_cache_path,
)
from alambic.pipeline.store.run_store import (
    RUN_STATUSES,
    RUN_STORE_VERSION,
    RunStore,
    pipeline_dir,
)
from alambic.settings import cache_dir

default_cache_dir = cache_dir
"""``$ALAMBIC_CACHE_DIR`` if set, else ``~/.cache/alambic`` (see :mod:`alambic.settings`)."""


__all__ = [
    "REQUEST_CACHE_FILENAME",
    "RUN_STATUSES",
    "RUN_STORE_VERSION",
    "RequestCacheStore",
    "RunStore",
    "StoreError",
    "default_cache_dir",
    "pipeline_dir",
    "request_cache_path",
]
