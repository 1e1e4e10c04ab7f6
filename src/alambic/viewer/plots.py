"""Plots as server-side SVG drawn by matplotlib (no script or font fetched by the page)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from alambic.viewer.queries import METADATA
from alambic.viewer.sources import Source

MAX_SCORE_COLUMNS = 6
LATENCY = "latency s"
"""Title of the per-request latency histograms (``alambic_metadata['latency_<task>']``)."""


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return []


def collect(source: Source, step: str) -> dict[str, list[float]]:
    """Numeric values per series: score-like columns, token counts and latencies."""
    series: dict[str, list[float]] = {}
    for row in source.scan(step):
        for column, value in row.items():
            if column == METADATA:
                continue
            nums = _numbers(value)
            if nums:
                series.setdefault(f"column {column}", []).extend(nums)
        meta = row.get(METADATA)
        if isinstance(meta, dict):
            for key, value in meta.items():
                if key.startswith("statistics_") and isinstance(value, dict):
                    for stat, v in value.items():
                        nums = _numbers(v)
                        if nums:
                            series.setdefault(f"{stat} ({key[11:]})", []).extend(nums)
                elif key.startswith("latency_"):  # seconds each request of a task took
                    series.setdefault(f"{LATENCY} ({key[8:]})", []).extend(_numbers(value))
    columns = [k for k in series if k.startswith("column ")][:MAX_SCORE_COLUMNS]
    others = [k for k in series if not k.startswith("column ")]
    return {k: series[k] for k in columns + others if series[k]}


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def histogram(title: str, values: Iterable[float]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = list(values)
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    ax.hist(data, bins=min(30, max(5, len(set(data)))), color="#4c72b0")
    ax.set_title(f"{title} (n={len(data)})", fontsize=9)
    if title.startswith(LATENCY):
        ax.set_xlabel("seconds from sending a request to its reply", fontsize=8)
        ax.set_ylabel("requests", fontsize=8)
    ax.tick_params(labelsize=8)
    return _svg(fig)


def rows_over_time(points: list[tuple[float, int]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    if points:
        start = points[0][0]
        ax.plot([t - start for t, _ in points], [n for _, n in points], color="#55a868")
    ax.set_title("rows committed over time", fontsize=9)
    ax.set_xlabel("seconds since the first batch", fontsize=8)
    ax.tick_params(labelsize=8)
    return _svg(fig)


def all_plots(source: Source, step: str) -> list[dict[str, str]]:
    plots = [{"title": k, "svg": histogram(k, v)} for k, v in collect(source, step).items()]
    timeline = source.timeline(step)
    if len(timeline) > 1:
        plots.append({"title": "rows over time", "svg": rows_over_time(timeline)})
    return plots
