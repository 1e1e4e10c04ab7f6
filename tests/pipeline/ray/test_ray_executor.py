"""The Ray executor gives the local executor's Distisets: re-batching, fan-in, global steps,
routing and convergence, replicas, failures as rows, API tasks; and one shared rate budget."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from alambic.errors import METADATA_COLUMN
from alambic.llms.fake import FakeLLM
from alambic.llms.openai import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import (
    GlobalStep,
    KeepColumns,
    LoadDataFromDicts,
    Step,
    StepInput,
    StepOutput,
)
from alambic.steps.base import StepResources
from alambic.steps.routing import sample_n_steps
from alambic.steps.tasks.text_generation import TextGeneration
from alambic.testing.openai_server import OpenAITestServer

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.xdist_group("ray")]


class Trace(Step):
    """Appends ``"<name>:<size of its batch>"`` to each row's ``trace``."""

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["trace"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "trace": [*r.get("trace", []), f"{self.name}:{len(inputs)}"]} for r in inputs]


class CountAll(GlobalStep):
    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["n"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "n": len(inputs)} for r in inputs]


class Answer(Step):
    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["answer"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "answer": f"{self.name}:{r['i']}"} for r in inputs]


class Converge(Step):
    @property
    def inputs(self) -> list[str]:
        return ["answer"]

    @property
    def outputs(self) -> list[str]:
        return ["answers"]

    def process(self, *inputs: StepInput) -> StepOutput:
        yield [
            {"i": group[0]["i"], "answers": [row["answer"] for row in group]}
            for group in zip(*inputs, strict=True)
        ]


class FailOnRow3(Step):
    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["double"]

    def process(self, inputs: StepInput) -> StepOutput:
        if any(r["i"] == 3 for r in inputs):
            raise RuntimeError("cannot handle row 3")
        yield [{**r, "double": 2 * r["i"]} for r in inputs]


class WherePid(Step):
    """Records the process that computed each batch (dropped before comparing)."""

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["pid"]

    def process(self, inputs: StepInput) -> StepOutput:
        time.sleep(0.02)
        yield [{**r, "pid": os.getpid()} for r in inputs]


def _ship_this_module_by_value() -> None:
    """This test module is not importable by Ray workers: its classes travel by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


_ship_this_module_by_value()


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"i": i} for i in range(n)]


def rebatching() -> Pipeline:
    with Pipeline(name="ray-rebatch") as p:
        load = LoadDataFromDicts(name="load", data=_rows(23), batch_size=3)
        load >> Trace(name="a", input_batch_size=2) >> Trace(name="b", input_batch_size=7)
    return p


def fan_in_and_global() -> Pipeline:
    with Pipeline(name="ray-fan-in") as p:
        load = LoadDataFromDicts(name="load", data=_rows(10), batch_size=4)
        a, b = Trace(name="a", input_batch_size=3), Answer(name="b", input_batch_size=5)
        load >> [a, b] >> CountAll(name="all")
    return p


def routing() -> Pipeline:
    with Pipeline(name="ray-routing") as p:
        load = LoadDataFromDicts(name="load", data=_rows(12), batch_size=3)
        branches = [Answer(name="x"), Answer(name="y"), Answer(name="z")]
        load >> sample_n_steps(2) >> branches >> Converge(name="join")
    return p


def failures_as_rows() -> Pipeline:
    with Pipeline(name="ray-failures") as p:
        load = LoadDataFromDicts(
            name="load", data=[{"i": i, "instruction": f"q{i}"} for i in range(7)], batch_size=3
        )
        fail = FailOnRow3(name="fail", input_batch_size=2)
        gen = TextGeneration(name="gen", llm=FakeLLM(fail_on=["q5"]), input_batch_size=2)
        load >> fail >> gen
    return p


BUILDERS: list[Callable[[], Pipeline]] = [rebatching, fan_in_and_global, routing, failures_as_rows]


def _table(distiset: Any) -> dict[str, list[dict[str, Any]]]:
    return {leaf: distiset[leaf]["train"].to_list() for leaf in sorted(distiset)}


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_ray_gives_the_local_distiset(local_ray: Any, build: Callable[[], Pipeline]) -> None:
    local = _table(build().run(use_cache=False, show_progress=False))
    on_ray = _table(build().run(use_cache=False, show_progress=False, executor="ray"))
    assert on_ray == local
    assert sum(len(rows) for rows in local.values()) > 0


def test_failures_on_ray_keep_their_reasons(local_ray: Any) -> None:
    rows = failures_as_rows().run(use_cache=False, show_progress=False, executor="ray")
    table = rows["default"]["train"]
    assert table["double"] == [0, 2, None, None, 8, 10, 12]
    errors = [(m or {}).get("error_fail") for m in table[METADATA_COLUMN]]
    assert errors[2] is not None
    assert errors[2]["message"] == "cannot handle row 3"
    assert errors[2]["kind"] == "step"
    generations = table["generation"]
    assert generations[5] is None
    assert generations[4] == "fake reply to: q4"


def test_replicas_are_actors_in_other_processes(local_ray: Any) -> None:
    with Pipeline(name="ray-replicas") as p:
        load = LoadDataFromDicts(name="load", data=_rows(16), batch_size=2)
        where = WherePid(name="where", input_batch_size=2, resources=StepResources(replicas=2))
        load >> where
    table = p.run(use_cache=False, show_progress=False, executor="ray")["default"]["train"]
    assert table["i"] == list(range(16))
    pids = set(table["pid"])
    assert len(pids) == 2
    assert os.getpid() not in pids
    for k in range(0, 16, 2):  # each batch computed by one actor
        assert table["pid"][k] == table["pid"][k + 1]


def test_api_task_on_ray_matches_local_and_reuses_the_request_cache(
    local_ray: Any, openai_server: OpenAITestServer
) -> None:
    def build() -> Pipeline:
        llm = OpenAILLM(model="test-model", base_url=openai_server.base_url, max_concurrency=8)
        with Pipeline(name="ray-api") as p:
            load = LoadDataFromDicts(
                name="load", data=[{"instruction": f"q{i}"} for i in range(40)], batch_size=10
            )
            gen = TextGeneration(
                name="gen", llm=llm, input_batch_size=5, resources=StepResources(replicas=2)
            )
            load >> gen
        return p

    pipeline = build()
    on_ray = pipeline.run(show_progress=False, executor="ray")["default"]["train"]
    sent = openai_server.stats["total_requests"]
    assert sent == 40
    # the run summary counts what the actors' clients did, as locally
    summary = pipeline.last_summary
    assert summary is not None
    assert summary["steps"]["gen"]["llm"]["requests"] == 40
    assert summary["steps"]["gen"]["rows_out"] == 40
    assert on_ray["instruction"] == [f"q{i}" for i in range(40)]
    assert all(isinstance(g, str) and g for g in on_ray["generation"])
    # the same pipeline run locally, without the stored batches, is answered by the cache
    local = build().run(use_cache=False, show_progress=False)["default"]["train"]
    assert openai_server.stats["total_requests"] == sent
    assert local.to_list() == on_ray.to_list()


def test_an_engine_sharded_over_gpus_reserves_them_together() -> None:
    from alambic.llms.vllm import vLLM
    from alambic.pipeline.executor.graph import Node
    from alambic.pipeline.executor.ray_cluster import actor_options, placement_bundles

    def node_for(step: Any) -> Node:
        return Node(name="gen", step=step, signature="s", preds=["load"], succs=[], mode="rebatch")

    sharded = TextGeneration(
        name="gen",
        llm=vLLM(
            model="some/model", tensor_parallel_size=2, extra_kwargs={"pipeline_parallel_size": 2}
        ),
        resources=StepResources(cpus=2, gpus=1),
    )
    assert placement_bundles(node_for(sharded)) == [{"GPU": 1.0, "CPU": 2.0}] + [{"GPU": 1.0}] * 3
    single = TextGeneration(
        name="gen", llm=FakeLLM(), resources=StepResources(gpus=1, memory=2**30)
    )
    assert placement_bundles(node_for(single)) is None
    options = actor_options(node_for(single))
    assert options["num_gpus"] == 1
    assert options["memory"] == 2**30
    assert options["num_cpus"] == 1
    cpu_only = actor_options(node_for(TextGeneration(name="gen", llm=FakeLLM())))
    assert "num_gpus" not in cpu_only  # a step without GPUs never waits for one


def test_an_api_task_holds_enough_batches_to_fill_its_concurrency(
    local_ray: Any, openai_server_factory: Callable[..., OpenAITestServer]
) -> None:
    """A replica holds batches enough for twice its LLM's concurrency (8 at least): with
    100 requests allowed and batches of 5 rows, the server sees the 100, not 8 x 5 = 40."""
    from alambic.pipeline.executor.graph import Node
    from alambic.pipeline.executor.ray_cluster import (
        MAX_UNITS_PER_ACTOR,
        UNITS_PER_ACTOR,
        actor_options,
        units_per_actor,
    )

    def node_for(concurrency: int, batch: int) -> Node:
        llm = OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", max_concurrency=concurrency)
        step = TextGeneration(name="gen", llm=llm, input_batch_size=batch)
        return Node(name="gen", step=step, signature="s", preds=["load"], succs=[], mode="rebatch")

    assert units_per_actor(node_for(1000, 50)) == 40
    assert actor_options(node_for(1000, 50))["max_concurrency"] == 42
    assert units_per_actor(node_for(16, 10)) == UNITS_PER_ACTOR
    assert units_per_actor(node_for(100_000, 1)) == MAX_UNITS_PER_ACTOR
    keep = KeepColumns(name="keep", columns=["instruction"])
    one = Node(name="keep", step=keep, signature="s", preds=["load"], succs=[], mode="rebatch")
    assert units_per_actor(one) == 1  # a step that is not row-async: one batch at a time

    server = openai_server_factory(latency_s=0.3)
    with Pipeline(name="ray-fill") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"q{i}"} for i in range(400)])
        gen = TextGeneration(
            name="gen",
            llm=OpenAILLM(model="m", base_url=server.base_url, max_concurrency=100),
            input_batch_size=5,
        )
        load >> gen
    rows = pipeline.run(use_cache=False, show_progress=False, executor="ray")
    assert [r["generation"] for r in rows["default"]["train"].to_list()] == [
        f"reply to: q{i}" for i in range(400)
    ]
    assert server.stats["max_in_flight"] >= 90  # 40 before (8 batches of 5 rows)


def test_ray_doc_first_example_runs_as_written(
    local_ray: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[3] / "docs" / "ray.md"
    first = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)[0]
    exec(compile(first, str(doc), "exec"), {})
    assert capsys.readouterr().out.splitlines()[-1] == "100"


def test_ray_executor_is_found_by_name_and_importable() -> None:
    from alambic.pipeline.executor import EXECUTORS, RayExecutor, resolve_executor

    assert "ray" in EXECUTORS
    executor = resolve_executor("ray")
    assert isinstance(executor, RayExecutor)
    assert resolve_executor(RayExecutor(address="auto")).address == "auto"  # type: ignore[attr-defined]


def test_a_wrong_key_stops_a_ray_run_with_the_setting_named(
    local_ray: Any, openai_server_factory: Callable[..., OpenAITestServer]
) -> None:
    from alambic.errors import LLMConfigurationError

    server = openai_server_factory(api_key="the-right-key")
    llm = OpenAILLM(model="test-model", base_url=server.base_url, api_key="a-wrong-key-0001")
    with Pipeline(name="ray-wrong-key") as p:
        load = LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}"} for i in range(30)])
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=10)
    with pytest.raises(LLMConfigurationError, match="'api_key'") as caught:
        p.run(use_cache=False, show_progress=False, executor="ray")
    assert "a-wrong-key-0001" not in str(caught.value)
    # the breaker stops the replica after its first refusal: a handful, not one per row
    assert server.stats["total_requests"] <= 3
