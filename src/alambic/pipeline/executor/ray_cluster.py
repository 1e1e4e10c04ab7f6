"""Ray's side of a Ray run: connecting, where a step's actors go and with what, the
progress the driver shows for them, the driver's view of a budget the ledger actor keeps, and
letting everything go at the end (see :mod:`.ray_executor` for the run itself)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from alambic.budget import Budget, RunBudget, SharedRunBudget, Spend, _Account
from alambic.errors import AlambicUserError
from alambic.pipeline.executor.graph import Node

UNITS_PER_ACTOR = 8
"""Units an asynchronous step's actor holds at least at once (their rows share its LLM
concurrency); more when its concurrency asks for it (:func:`units_per_actor`)."""

MAX_UNITS_PER_ACTOR = 512
"""A backstop on :func:`units_per_actor` (Ray runs each unit as a call on the actor's loop)."""

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


def units_per_actor(node: Node) -> int:
    """Batches one replica of a step holds at once. An asynchronous step (an LLM task) gets
    enough to keep its LLM's concurrency full twice over, so its slots stay busy while the
    slowest rows of a batch finish (with 8 batches of 50 rows and ``max_concurrency=1000``,
    at most 400 requests were ever in flight: W7 on Ray ran at 439 rows/s of 2,000); other
    steps get one."""
    if not node.step.processes_rows_async:
        return 1
    from alambic.pipeline.executor.batching import batch_size

    batch = max(1, int(min(batch_size(node), 10_000)))
    wanted = -(-2 * max(1, node.step.concurrency_hint) // batch)  # ceil
    return max(UNITS_PER_ACTOR, min(wanted, MAX_UNITS_PER_ACTOR))


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
        options["max_concurrency"] = units_per_actor(node) + 2  # + progress polls
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


async def poll_progress(shown: Any, handles: list[Any], progress: RemoteProgress) -> None:
    """Ask every actor of a step for its progress every :data:`PROGRESS_POLL_S`, so the
    display (``shown``, the step's progress entry, or None) moves while units are in flight,
    not only when one returns."""
    import ray

    while True:
        await asyncio.sleep(PROGRESS_POLL_S)
        asked = [handle.progress.remote() for handle in handles]
        for index, answer in enumerate(asked):
            try:
                progress.update(index, await answer)
            except ray.exceptions.RayError:  # a lost actor: its units are re-sent
                continue
        if shown is not None:
            shown.computed = progress.rows_done


class LedgerBudget(SharedRunBudget):
    """The driver's view of a run budget kept by the ledger actor: the run's report, for
    the summary and the dataset card, comes from there (its journal written first)."""

    def __init__(self, limit: Budget, ledger: Any) -> None:
        super().__init__(limit, ledger)
        self._report: dict[str, Any] | None = None

    def flush(self) -> None:
        import ray

        answer = ray.get(self._ledger.call.remote("spend_report"), timeout=60)
        if answer is None:
            return
        self._report = answer["report"]
        self.exhausted = answer["exhausted"]
        for step, model in answer["accounts"]:
            self.accounts.setdefault((step, model), _Account())

    def report(self) -> dict[str, Any]:
        if self._report is None:
            self.flush()
        assert self._report is not None
        return self._report


class RemoteCountingBudget(RunBudget):
    """The driver's budget of a distributed run without a cap: spending is counted in each
    actor (no round trip per request) and comes back with its progress reports; the
    (step, model) accounts of remote steps are the sums of every actor's latest report, priced
    here with the driver's copy of the step's LLM. Inline steps count here as locally. (An
    actor that dies takes the count of its unreported requests with it.)"""

    def __init__(self, progress: dict[str, RemoteProgress], nodes: dict[str, Node]) -> None:
        super().__init__(None)
        self._progress = progress
        # the driver's copy of each remote step's LLM prices its totals
        self._llms = {name: getattr(nodes[name].step, "llm", None) for name in progress}

    def _sync(self) -> None:
        sums: dict[tuple[str, str], Spend] = {}
        for progress in list(self._progress.values()):
            for report in list(progress.reports.values()):
                for step, model, spend in report.get("spend") or ():
                    sums.setdefault((step, model), Spend()).add(Spend(**spend))
        with self._lock:
            for key, spend in sums.items():
                account = self.accounts.get(key)
                if account is None:
                    account = self.accounts[key] = _Account(llm=self._llms.get(key[0]))
                account.settled = spend

    def live(self) -> list[tuple[str, str, Spend]]:
        self._sync()
        return super().live()

    def report(self) -> dict[str, Any]:
        self._sync()
        return super().report()

    def flush(self) -> None:
        self._sync()
        super().flush()


def halt_actors(actors: dict[str, list[Any]], reason: str) -> None:
    """A first Ctrl-C: every actor's budget refuses the requests its rows have not sent yet,
    as locally (requests in flight finish and reach the request cache; the rerun sends the
    rest), instead of the actors draining the rows they hold at a rate limit's pace."""
    for handles in actors.values():
        for handle in handles:
            with contextlib.suppress(Exception):  # a dead actor has nothing to stop
                handle.halt.remote(reason)


def release(actors: dict[str, list[Any]], groups: list[Any], ledger: Any) -> None:
    """Close and kill a run's actors, its placement groups and its ledger (best effort)."""
    import ray

    closing = [h.close.remote() for handles in actors.values() for h in handles]
    with contextlib.suppress(Exception):  # actors are killed below whatever happens
        ray.get(closing, timeout=60)
    for handles in actors.values():
        for handle in handles:
            with contextlib.suppress(Exception):
                ray.kill(handle)
    for group in groups:
        with contextlib.suppress(Exception):
            ray.util.remove_placement_group(group)
    if ledger is not None:
        with contextlib.suppress(Exception):
            ray.kill(ledger)


def scheduling_strategy(bundles: list[dict[str, float]] | None, groups: list[Any]) -> Any:
    """Where one replica's actor goes: in a placement group of its own when the step asks for
    bundles (its GPUs reserved together; the group is added to ``groups``, removed at the
    run's end), else spread over as many nodes as fit."""
    if bundles is None:
        return "SPREAD"
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = ray.util.placement_group(bundles, strategy="PACK")
    groups.append(group)
    return PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_capture_child_tasks=True
    )


__all__ = [
    "ACTOR_RESTARTS",
    "MAX_UNITS_PER_ACTOR",
    "PROGRESS_POLL_S",
    "UNITS_PER_ACTOR",
    "LedgerBudget",
    "RemoteCountingBudget",
    "RemoteProgress",
    "actor_options",
    "connect",
    "halt_actors",
    "placement_bundles",
    "poll_progress",
    "release",
    "scheduling_strategy",
    "units_per_actor",
]
