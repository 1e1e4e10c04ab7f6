"""Routing batches to some successors (``sample_n_steps``, ``routing_batch_function``), the
convergence step after them, and replicas of a synchronous step."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from alambic.pipeline import Pipeline, routing_batch_function, sample_n_steps
from alambic.steps import (
    GlobalStep,
    GroupColumns,
    LoadDataFromDicts,
    Step,
    StepInput,
    StepOutput,
    StepResources,
)


class Answer(Step):
    """Answers ``"<step name>:<i>"`` and records which step did it."""

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["answer"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "answer": f"{self.name}:{r['i']}"} for r in inputs]


class Converge(Step):
    """Gets one list per branch that handled the batch; checks that they are row-aligned."""

    @property
    def inputs(self) -> list[str]:
        return ["answer"]

    @property
    def outputs(self) -> list[str]:
        return ["answers", "n_inputs", "aligned"]

    def process(self, *inputs: StepInput) -> StepOutput:
        lengths = {len(rows) for rows in inputs}
        assert len(lengths) == 1, lengths
        out = []
        for group in zip(*inputs, strict=True):
            out.append(
                {
                    "i": group[0]["i"],
                    "answers": [row["answer"] for row in group],
                    "n_inputs": len(inputs),
                    "aligned": len({row["i"] for row in group}) == 1,
                }
            )
        yield out


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"i": i} for i in range(n)]


def _run(pipeline: Pipeline, **kwargs: Any) -> Any:
    return pipeline.run(use_cache=False, show_progress=False, **kwargs)


def _expected_branches(n: int, batches: int, successors: list[str]) -> list[list[str]]:
    router = sample_n_steps(n)
    return [router.route(successors, seq) for seq in range(batches)]


def test_sample_n_steps_then_custom_convergence_gets_the_chosen_branches_aligned() -> None:
    with Pipeline(name="route") as p:
        load = LoadDataFromDicts(name="load", data=_rows(9), batch_size=2)
        branches = [Answer(name="b"), Answer(name="c"), Answer(name="d")]
        converge = Converge(name="converge", input_batch_size=3)
        load >> sample_n_steps(2) >> branches >> converge
    distiset = _run(p)
    rows = distiset["default"]["train"]
    assert rows["i"] == list(range(9))
    assert all(rows["aligned"])
    assert rows["n_inputs"] == [2] * 9
    chosen = _expected_branches(2, 5, ["b", "c", "d"])
    # each batch of 2 source rows went to exactly the 2 branches chosen for it, in that order
    expected = [[f"{s}:{i}" for s in chosen[i // 2]] for i in range(9)]
    assert rows["answers"] == expected
    assert len({tuple(c) for c in chosen}) > 1  # the sample differs between batches


def test_sample_n_steps_then_group_columns() -> None:
    with Pipeline(name="route-group") as p:
        load = LoadDataFromDicts(name="load", data=_rows(6), batch_size=3)
        branches = [Answer(name="b"), Answer(name="c"), Answer(name="d")]
        group = GroupColumns(name="group", columns=["answer"])
        load >> sample_n_steps(2) >> branches >> group
    rows = _run(p)["default"]["train"]
    chosen = _expected_branches(2, 2, ["b", "c", "d"])
    assert rows["i"] == list(range(6))
    assert rows["grouped_answer"] == [[f"{s}:{i}" for s in chosen[i // 3]] for i in range(6)]


def test_routing_is_deterministic_across_runs() -> None:
    def build() -> Pipeline:
        with Pipeline(name="route-again") as p:
            load = LoadDataFromDicts(name="load", data=_rows(8), batch_size=1)
            branches = [Answer(name="b"), Answer(name="c"), Answer(name="d")]
            load >> sample_n_steps(1) >> branches >> Converge(name="converge")
        return p

    first = _run(build())["default"]["train"]["answers"]
    second = _run(build())["default"]["train"]["answers"]
    assert first == second
    assert [len(a) for a in first] == [1] * 8


def test_custom_routing_function_with_a_chain_in_a_branch() -> None:
    @routing_batch_function
    def even_left_odd_both(successors: list[str], seq: int) -> list[str]:
        return [successors[0]] if seq % 2 == 0 else list(successors)

    class Shout(Step):
        @property
        def inputs(self) -> list[str]:
            return ["answer"]

        @property
        def outputs(self) -> list[str]:
            return ["answer"]

        def process(self, inputs: StepInput) -> StepOutput:
            yield [{**r, "answer": r["answer"].upper()} for r in inputs]

    with Pipeline(name="route-custom") as p:
        load = LoadDataFromDicts(name="load", data=_rows(7), batch_size=2)
        left, right = Answer(name="left"), Answer(name="right")
        shout = Shout(name="shout")
        converge = Converge(name="converge")
        load >> even_left_odd_both >> [left, right]
        right >> shout >> converge
        left >> converge
    rows = _run(p)["default"]["train"]
    assert rows["i"] == list(range(7))
    assert all(rows["aligned"])
    # converge's predecessors are [shout, left] (connection order): its inputs come in that order
    expected = []
    for i in range(7):
        batch = i // 2
        expected.append([f"left:{i}"] if batch % 2 == 0 else [f"RIGHT:{i}", f"left:{i}"])
    assert rows["answers"] == expected


def test_sample_more_than_successors_fails_with_a_clear_message() -> None:
    with Pipeline(name="route-too-many") as p:
        load = LoadDataFromDicts(name="load", data=_rows(2))
        load >> sample_n_steps(3) >> [Answer(name="b"), Answer(name="c")]
    with pytest.raises(ValueError, match=r"sample_n_steps\(3\) cannot choose 3 of 2"):
        _run(p)


# -- replicas --------------------------------------------------------------------------------


class SlowReplica(Step):
    """Sleeps longer on even batches, so a second replica finishes first."""

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["replica", "thread"]

    def process(self, inputs: StepInput) -> StepOutput:
        time.sleep(0.06 if inputs[0]["i"] % 4 == 0 else 0.005)
        ident = threading.get_ident()
        yield [{**r, "replica": id(self), "thread": ident} for r in inputs]


def test_replicas_of_a_sync_step_run_concurrently_and_keep_order() -> None:
    with Pipeline(name="replicas") as p:
        load = LoadDataFromDicts(name="load", data=_rows(16), batch_size=2)
        slow = SlowReplica(name="slow", input_batch_size=2, resources=StepResources(replicas=2))
        load >> slow
    rows = _run(p)["default"]["train"]
    assert rows["i"] == list(range(16))
    assert len(set(rows["replica"])) == 2
    assert len(set(rows["thread"])) >= 2
    # each batch was processed by one replica
    for k in range(0, 16, 2):
        assert rows["replica"][k] == rows["replica"][k + 1]


def test_one_replica_processes_batches_one_at_a_time() -> None:
    with Pipeline(name="one-replica") as p:
        load = LoadDataFromDicts(name="load", data=_rows(6), batch_size=2)
        slow = SlowReplica(name="slow", input_batch_size=2)
        load >> slow
    rows = _run(p)["default"]["train"]
    assert rows["i"] == list(range(6))
    assert len(set(rows["replica"])) == 1


# -- global steps after a router -------------------------------------------------------------


class CountAll(GlobalStep):
    """A global step: ``n`` is the number of rows its one call received."""

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["n"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "n": len(inputs)} for r in inputs]


def test_global_step_after_a_router_gets_all_its_rows_at_once() -> None:
    with Pipeline(name="route-global") as p:
        load = LoadDataFromDicts(name="load", data=_rows(6), batch_size=2)
        load >> sample_n_steps(1) >> [CountAll(name="g1"), CountAll(name="g2")]
    distiset = _run(p)
    chosen = _expected_branches(1, 3, ["g1", "g2"])
    for leaf in ("g1", "g2"):
        expected_rows = [i for i in range(6) if chosen[i // 2] == [leaf]]
        rows = distiset[leaf]["train"]
        assert rows["i"] == expected_rows
        assert rows["n"] == [len(expected_rows)] * len(expected_rows)
