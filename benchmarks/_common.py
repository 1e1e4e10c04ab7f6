"""Shared pieces of the pipeline benchmarks: the workload pipeline and process figures."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(module_args: list[str], timeout: float = 1200) -> dict[str, Any]:
    """Run a workload in a fresh interpreter (imports included in its wall time)."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *module_args], capture_output=True, text=True, timeout=timeout, check=False
    )
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"workload failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 2)
    return result


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
