"""``DiskReserve``: a file of reserved space that a full disk can be paid from.

An answer the LLM already sent must reach the request cache even when the disk fills up, or
the rerun pays for it again. SQLite cannot write anything on a full disk, so each run keeps a
reserve file (``<cache_dir>/.alambic-reserve``, ``ALAMBIC_DISK_RESERVE_MB``, default 8 MiB)
with its space allocated. The first write that meets a full disk deletes it and tries again:
the answers waiting to be written, those of the requests still in flight and the batch being
committed then fit in the freed space, and the run stops with the documented
:class:`~alambic.errors.StoreError`. The next run allocates the reserve again, or refuses to
start (with what to free) when the disk cannot hold it. The Ray executor's actors, which
write to the request cache from their own processes, keep one each (``filename``).

Why a home-made file: no library offers "reserve space to spend on ENOSPC"; the whole
mechanism is ``posix_fallocate`` and ``unlink``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from pathlib import Path

from alambic.errors import StoreError

logger = logging.getLogger("alambic")

RESERVE_FILENAME = ".alambic-reserve"
_CHUNK = 1024 * 1024


class DiskReserve:
    """The reserve file of one cache folder: :meth:`ensure` at the start of a run,
    :meth:`release` on the first full-disk write, :attr:`error` once spent."""

    def __init__(self, directory: Path, size: int, filename: str = RESERVE_FILENAME) -> None:
        self.path = Path(directory) / filename
        self.size = size
        self.error: StoreError | None = None
        """The full-disk error that spent the reserve (None while it is intact): once set,
        no new request may be sent, since its answer might have nowhere to go."""
        self._lock = threading.Lock()

    def ensure(self) -> None:
        """Allocate the reserve (kept as it is when already whole); raise :class:`StoreError`
        naming the folder, the size and the fixes when the disk cannot hold it."""
        if self.size <= 0:
            return
        with contextlib.suppress(OSError):
            if self.path.stat().st_blocks * 512 >= self.size:
                return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _allocate(self.path, self.size)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.unlink()
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreError(
                    f"Cannot write the disk reserve {self.path} ({exc}). Set ALAMBIC_CACHE_DIR "
                    "to a writable folder."
                ) from exc
            mib = self.size / (1024 * 1024)
            raise StoreError(
                f"Not enough free space in {self.path.parent} to start: alambic keeps a "
                f"{mib:g} MiB reserve there ({self.path.name}) so that a full disk never loses "
                "an answer already received. Free at least that much space, or set "
                "ALAMBIC_CACHE_DIR to a folder on a larger disk (or ALAMBIC_DISK_RESERVE_MB=0 "
                "to run without a reserve: a full disk may then lose the answers not yet "
                "written, and the rerun pays for them again)."
            ) from exc

    def release(self, error: StoreError) -> bool:
        """Delete the reserve after ``error`` (a full disk); return whether space was freed
        (False when it was spent already or there is none)."""
        with self._lock:
            first = self.error is None
            if first:
                self.error = error
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                logger.warning("Could not delete the disk reserve %s: %s", self.path, exc)
                return False
        if first:
            logger.warning(
                "Disk full under %s: freed the %g MiB reserve to write the answers already "
                "received; no new request is sent and the run stops.",
                self.path.parent,
                self.size / (1024 * 1024),
            )
        return True

    def discard(self) -> None:
        """Delete the reserve file of a process that writes no more (a Ray actor at its end)."""
        with contextlib.suppress(OSError):
            self.path.unlink()


def _allocate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fallocate = getattr(os, "posix_fallocate", None)
        if fallocate is not None:
            try:
                fallocate(fd, 0, size)
                return
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
        # no fallocate (macOS, some file systems): real bytes, which also take real space
        os.lseek(fd, 0, os.SEEK_SET)
        block = b"\0" * _CHUNK
        left = size
        while left > 0:
            left -= os.write(fd, block[: min(left, _CHUNK)])
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["RESERVE_FILENAME", "DiskReserve"]
