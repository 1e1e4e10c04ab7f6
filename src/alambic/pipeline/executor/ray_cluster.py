"""Ray's side of a Ray run: connecting, where a step's actors go and with what, and the
progress the driver shows for them (see :mod:`.ray_executor` for the run itself)."""

from __future__ import annotations

import os
from typing import Any

from alambic.errors import AlambicUserError
from alambic.pipeline.executor.graph import Node

UNITS_PER_ACTOR = 8
"""Units an asynchronous step's actor holds at once (their rows share its LLM concurrency)."""

ACTOR_RESTARTS = 4
"""How often Ray restarts a step's actor that died."""


def connect(address: str | None, init_kwargs: dict[str, Any]) -> bool:
    """Connect to Ray unless already connected; return whether this call connected."""
    try:
        import ray
    except ImportError as exc:
        raise AlambicUserError(
            'executor="ray" needs Ray: pip install "alambic[ray]" (or pip install "ray[data]").'
        ) from exc
    if ray.is_initialized():
        return False
    target = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"log_to_driver": True, **init_kwargs}
    try:
        ray.init(address=target, **kwargs)
    except ConnectionError as exc:
        raise AlambicUserError(
            f"Could not connect to the Ray cluster at {target!r}: {exc}. Start one with "
            "`ray start --head`, fix RAY_ADDRESS / address=..., or leave both unset to run "
            "a local Ray instance."
        ) from exc
    return True


def actor_options(node: Node) -> dict[str, Any]:
    """Ray options for one replica of a step, from its resources."""
    resources = node.step.resources
    options: dict[str, Any] = {
        "num_cpus": resources.cpus if resources.cpus is not None else 1,
        "max_restarts": ACTOR_RESTARTS,
        "max_task_retries": ACTOR_RESTARTS,
        "name": None,
    }
    if resources.gpus:
        options["num_gpus"] = resources.gpus
    memory = getattr(resources, "memory", None)
    if memory:
        options["memory"] = memory
    custom = getattr(resources, "resources", None)
    if custom:
        options["resources"] = dict(custom)
    if node.step.processes_rows_async:
        options["max_concurrency"] = max(UNITS_PER_ACTOR, 2) + 2
    del options["name"]
    return options


def placement_bundles(node: Node) -> list[dict[str, float]] | None:
    """One bundle per GPU of an engine sharded over several GPUs (tensor x pipeline
    parallelism, as vLLM declares it), so all its shards are reserved together."""
    llm = getattr(node.step, "llm", None)
    tensor = int(getattr(llm, "tensor_parallel_size", 1) or 1)
    extra = getattr(llm, "extra_kwargs", None) or {}
    pipeline = int(extra.get("pipeline_parallel_size", 1) or 1)
    shards = tensor * pipeline
    if shards <= 1:
        return None
    cpus = node.step.resources.cpus or 1
    return [{"GPU": 1.0, "CPU": float(cpus)}] + [{"GPU": 1.0} for _ in range(shards - 1)]


PROGRESS_POLL_S = 0.25
"""How often the driver asks a step's actors for their progress while units are in flight."""


class RemoteProgress:
    """What the progress display reads of a step whose copies run in actors: the sum of
    their LLM counters, failed generations and rows finished, as last reported (with each
    result, and every :data:`PROGRESS_POLL_S` while units are in flight)."""

    def __init__(self) -> None:
        self.reports: dict[int, dict[str, Any]] = {}
        self.scheduler = self
        self.counters = self

    def update(self, actor: int, report: dict[str, Any]) -> None:
        """Keep an actor's newest report (a poll's answer may arrive after a newer one)."""
        held = self.reports.get(actor)
        if (
            held is not None
            and held.get("instance") == report.get("instance")  # a restarted actor: replace
            and int(report.get("seq", 0)) < int(held.get("seq", 0))
        ):
            return
        self.reports[actor] = report

    @property
    def rows_done(self) -> int:
        """Rows the actors finished, units still in flight included."""
        return sum(int(r.get("rows_done", 0)) for r in self.reports.values())

    @property
    def failures(self) -> int:
        return sum(int(r.get("failures", 0)) for r in self.reports.values())

    def snapshot(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        for report in self.reports.values():
            for key, value in (report.get("counters") or {}).items():
                if isinstance(value, dict):
                    merged = total.setdefault(key, {})
                    for k, v in value.items():
                        merged[k] = merged.get(k, 0) + v
                elif key == "requests_per_minute":
                    total[key] = value if total.get(key) is None else max(total[key], value or 0)
                elif isinstance(value, (int, float)):
                    total[key] = total.get(key, 0) + value
                else:
                    total.setdefault(key, value)
        return total


__all__ = [
    "ACTOR_RESTARTS",
    "PROGRESS_POLL_S",
    "UNITS_PER_ACTOR",
    "RemoteProgress",
    "actor_options",
    "connect",
    "placement_bundles",
]
