"""Running pipelines on the local executor: re-batching between steps, multi-yield
``process()``, generator forms, global steps, fan-in alignment, ``parameters``, ``dataset``
and ``dry_run``."""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

from alambic.errors import MissingColumnError
from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import (
    GeneratorStep,
    GlobalStep,
    LoadDataFromDicts,
    Step,
    StepInput,
    StepOutput,
)
from alambic.steps.tasks.text_generation import TextGeneration
from alambic.utils.idle import idle_ahead


class Trace(Step):
    """Appends ``"<name>:<size of the batch it arrived in>"`` to each row's ``trace``."""

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["trace"]

    def process(self, inputs: StepInput) -> StepOutput:
        yield [{**r, "trace": [*r.get("trace", []), f"{self.name}:{len(inputs)}"]} for r in inputs]


class TraceAll(GlobalStep):
    """A global step: records how many rows its single call received."""

    calls: ClassVar[list[int]] = []

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["total"]

    def process(self, inputs: StepInput) -> StepOutput:
        TraceAll.calls.append(len(inputs))
        yield [{**r, "total": len(inputs)} for r in inputs]


class YieldEachRow(Step):
    """Yields every row as its own batch, and a copy of it in a second batch."""

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["copy"]

    def process(self, inputs: StepInput) -> StepOutput:
        for row in inputs:
            yield [{**row, "copy": 0}]
        yield [{**row, "copy": 1} for row in inputs]


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"i": i} for i in range(n)]


def _run(pipeline: Pipeline, **kwargs: Any) -> Any:
    return pipeline.run(use_cache=False, show_progress=False, **kwargs)


def _sizes(total: int, size: int) -> list[int]:
    """Batch sizes a step sees when ``total`` rows are re-batched to ``size``."""
    return [size] * (total // size) + ([total % size] if total % size else [])


# -- re-batching -----------------------------------------------------------------------------


@pytest.mark.parametrize("gen_size", [1, 3, 4, 10])
@pytest.mark.parametrize(("size_a", "size_b"), [(1, 3), (2, 7), (3, 2), (4, 4), (5, 3), (20, 1)])
def test_rebatching_keeps_every_row_in_order(gen_size: int, size_a: int, size_b: int) -> None:
    total = 10
    with Pipeline(name="rebatch") as p:
        load = LoadDataFromDicts(name="load", data=_rows(total), batch_size=gen_size)
        a = Trace(name="a", input_batch_size=size_a)
        b = Trace(name="b", input_batch_size=size_b)
        load >> a >> b
    rows = _run(p)["default"]["train"]
    assert rows["i"] == list(range(total))
    seen_a = [s for size in _sizes(total, size_a) for s in [f"a:{size}"] * size]
    seen_b = [s for size in _sizes(total, size_b) for s in [f"b:{size}"] * size]
    assert [t[0] for t in rows["trace"]] == seen_a
    assert [t[1] for t in rows["trace"]] == seen_b


def test_multi_yield_process_keeps_every_batch() -> None:
    with Pipeline(name="multi-yield") as p:
        load = LoadDataFromDicts(name="load", data=_rows(5), batch_size=2)
        each = YieldEachRow(name="each", input_batch_size=3)
        after = Trace(name="after", input_batch_size=4)
        load >> each >> after
    rows = _run(p)["default"]["train"]
    # batch [0, 1, 2] gives 0, 1, 2 then copies 0, 1, 2; batch [3, 4] gives 3, 4, 3, 4
    assert rows["i"] == [0, 1, 2, 0, 1, 2, 3, 4, 3, 4]
    assert rows["copy"] == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]
    assert [t[0] for t in rows["trace"]] == ["after:4"] * 8 + ["after:2"] * 2


def test_global_step_gets_all_rows_in_one_call_then_successor_rebatches() -> None:
    TraceAll.calls.clear()
    with Pipeline(name="global") as p:
        load = LoadDataFromDicts(name="load", data=_rows(11), batch_size=3)
        a = Trace(name="a", input_batch_size=2)
        everything = TraceAll(name="everything", input_batch_size=2)
        after = Trace(name="after", input_batch_size=4)
        load >> a >> everything >> after
    rows = _run(p)["default"]["train"]
    assert TraceAll.calls == [11]
    assert rows["total"] == [11] * 11
    assert rows["i"] == list(range(11))
    assert [t[1] for t in rows["trace"]] == ["after:4"] * 8 + ["after:3"] * 3


class Join(Step):
    """Two predecessors: records whether row ``k`` of both lists is the same source row."""

    @property
    def inputs(self) -> list[str]:
        return ["i"]

    @property
    def outputs(self) -> list[str]:
        return ["aligned", "sizes"]

    def process(self, left: StepInput, right: StepInput) -> StepOutput:
        sizes = [len(left), len(right)]
        yield [
            {**lrow, "aligned": lrow["i"] == rrow["i"], "sizes": sizes}
            for lrow, rrow in zip(left, right, strict=True)
        ]


def test_fan_in_receives_row_aligned_lists_whatever_the_batch_sizes() -> None:
    with Pipeline(name="fan-in") as p:
        load = LoadDataFromDicts(name="load", data=_rows(11), batch_size=3)
        left = Trace(name="left", input_batch_size=2)
        right = Trace(name="right", input_batch_size=5)
        join = Join(name="join", input_batch_size=4)
        load >> [left, right] >> join
    rows = _run(p)["default"]["train"]
    assert rows["i"] == list(range(11))
    assert all(rows["aligned"])
    assert rows["sizes"] == [[4, 4]] * 8 + [[3, 3]] * 3


def test_fan_in_with_single_input_process_merges_rows() -> None:
    with Pipeline(name="merge") as p:
        load = LoadDataFromDicts(name="load", data=_rows(3))
        a = Trace(name="a", input_batch_size=2)
        b = Trace(name="b", input_batch_size=3)
        after = Trace(name="after")
        load >> [a, b] >> after
    rows = _run(p)["default"]["train"]
    # process(self, inputs) with two predecessors: row i merges both (later predecessor wins)
    assert rows["i"] == [0, 1, 2]
    assert rows["trace"] == [["b:3", "after:3"]] * 3


# -- generators ------------------------------------------------------------------------------


class Produce(GeneratorStep):
    """Yields rows in the shape given by ``mode``."""

    mode: str = "rows"

    @property
    def outputs(self) -> list[str]:
        return ["i"]

    def process(self, offset: int = 0) -> Any:
        if self.mode == "single":
            for i in range(5):
                yield {"i": i}
        elif self.mode == "lists":
            yield [{"i": 0}, {"i": 1}, {"i": 2}]
            yield [{"i": 3}]
            yield []
            yield [{"i": 4}]
        elif self.mode == "pairs":
            yield [{"i": 0}, {"i": 1}], False
            yield [{"i": 2}, {"i": 3}, {"i": 4}], True
            yield [{"i": 99}], False  # never read: the previous pair said it was the last
        elif self.mode == "bad":
            yield "not a row"


@pytest.mark.parametrize("mode", ["single", "lists", "pairs"])
def test_generator_yield_forms(mode: str) -> None:
    with Pipeline(name="generator-forms") as p:
        gen = Produce(name="gen", mode=mode, batch_size=2)
        trace = Trace(name="trace", input_batch_size=3)
        gen >> trace
    rows = _run(p)["default"]["train"]
    assert rows["i"] == [0, 1, 2, 3, 4]
    assert [t[0] for t in rows["trace"]] == ["trace:3"] * 3 + ["trace:2"] * 2


def test_generator_yielding_something_else_fails_with_the_value() -> None:
    with Pipeline(name="generator-bad") as p:
        gen = Produce(name="gen", mode="bad")
        gen >> Trace(name="trace")
    with pytest.raises(TypeError, match=r"'gen' yielded str 'not a row'"):
        _run(p)


# -- parameters ------------------------------------------------------------------------------


def test_run_parameters_reach_the_step_and_the_llm() -> None:
    llm = FakeLLM()
    with Pipeline(name="params") as p:
        load = LoadDataFromDicts(name="load", data=[{"instruction": f"q{i}"} for i in range(5)])
        gen = TextGeneration(name="gen", llm=llm)
        load >> gen
    params = {"gen": {"input_batch_size": 2, "llm": {"generation_kwargs": {"temperature": 0.25}}}}
    rows = _run(p, parameters=params)["default"]["train"]
    assert rows["generation"] == [f"fake reply to: q{i}" for i in range(5)]
    assert gen.input_batch_size == 2
    assert len(llm.history) == 5
    assert all(h["generation_kwargs"] == {"temperature": 0.25} for h in llm.history)


def test_generator_batch_size_as_run_parameter() -> None:
    with Pipeline(name="gen-params") as p:
        load = LoadDataFromDicts(name="load", data=_rows(5))
        trace = Trace(name="trace", input_batch_size=100)
        load >> trace
    rows = _run(p, parameters={"load": {"batch_size": 2}, "trace": {"input_batch_size": 3}})
    assert [t[0] for t in rows["default"]["train"]["trace"]] == ["trace:3"] * 3 + ["trace:2"] * 2


# -- dataset= --------------------------------------------------------------------------------


def test_run_with_a_list_dataset_feeds_the_root() -> None:
    with Pipeline(name="dataset-list") as p:
        a = Trace(name="a", input_batch_size=2)
        b = Trace(name="b", input_batch_size=3)
        a >> b
    rows = _run(p, dataset=[{"i": i, "extra": str(i)} for i in range(5)])["default"]["train"]
    assert rows["i"] == [0, 1, 2, 3, 4]
    assert rows["extra"] == ["0", "1", "2", "3", "4"]
    assert [t[0] for t in rows["trace"]] == ["a:2"] * 4 + ["a:1"]


def test_run_with_a_hugging_face_dataset_feeds_the_root() -> None:
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict({"i": list(range(4)), "name": list("abcd")})
    with Pipeline(name="dataset-hf") as p:
        Trace(name="only", input_batch_size=3)
    rows = _run(p, dataset=data)["default"]["train"]
    assert rows["i"] == [0, 1, 2, 3]
    assert rows["name"] == ["a", "b", "c", "d"]
    assert rows["trace"] == [["only:3"]] * 3 + [["only:1"]]


def test_dataset_missing_a_required_column() -> None:
    with Pipeline(name="dataset-missing") as p:
        Trace(name="only")
    with pytest.raises(MissingColumnError, match=r"'only'.*'i'.*\['dataset'\].*\['j'\]"):
        _run(p, dataset=[{"j": 1}])


# -- dry_run ---------------------------------------------------------------------------------


def test_dry_run_processes_exactly_batch_size_rows() -> None:
    llm = FakeLLM()
    with Pipeline(name="dry") as p:
        load = LoadDataFromDicts(
            name="load", data=[{"instruction": f"q{i}"} for i in range(10)], batch_size=4
        )
        gen = TextGeneration(name="gen", llm=llm, input_batch_size=3)
        load >> gen
    distiset = p.dry_run(batch_size=2)
    rows = distiset["default"]["train"]
    assert rows["instruction"] == ["q0", "q1"]
    assert rows["generation"] == ["fake reply to: q0", "fake reply to: q1"]
    assert len(llm.history) == 2


def test_dry_run_default_is_one_row() -> None:
    with Pipeline(name="dry-one") as p:
        load = LoadDataFromDicts(name="load", data=_rows(10), batch_size=4)
        load >> Trace(name="trace")
    assert p.dry_run()["default"]["train"]["i"] == [0]


# -- the dataset-writing imports wait for an idle event loop -----------------------------------


def _executor_with_recorded_warm_up(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[int]]:
    from alambic.pipeline.executor import local, warm_up

    started: list[int] = []
    # 1: the writer's imports; 2: ``datasets``, for the dataset returned at the end
    monkeypatch.setattr(warm_up, "_warm_up_writer", lambda: started.append(1))
    monkeypatch.setattr(warm_up, "_warm_up_result", lambda: started.append(2))
    monkeypatch.setattr(warm_up, "_outputs_imported", lambda: False)
    # The watch reads the loop thread's CPU time; here it is the time spent in _compute only,
    # so that what is tested is the watch's decisions, not the machine's load (beside other
    # test workers a computing loop thread gets less than a core and read as idle).
    _LOOP_CPU[0] = 0.0
    clock = types.SimpleNamespace(monotonic=time.monotonic, thread_time=lambda: _LOOP_CPU[0])
    monkeypatch.setattr(warm_up, "time", clock)
    with Pipeline(name="warm-up") as pipeline:
        LoadDataFromDicts(data=[{"a": 1}])
    return local.LocalRun(pipeline, storage=False), started


_LOOP_CPU = [0.0]


async def _compute(seconds: float, slice_s: float = 0.1) -> None:
    """Keep the loop thread busy for ``seconds`` (a CPU-bound client), yielding to the loop
    between slices of ``slice_s``; the watch sees each slice as CPU time of the loop."""
    for _ in range(round(seconds / slice_s)):
        end = time.monotonic() + slice_s
        while time.monotonic() < end:
            pass
        _LOOP_CPU[0] += slice_s
        await asyncio.sleep(0)


def _watch_through(executor: Any, scenario: Callable[[], Awaitable[None]]) -> None:
    """Run ``scenario`` on a new loop that ``executor``'s warm-up watches, then wait for the
    import thread (if one started)."""

    async def main() -> None:
        stop = executor.warm_up.watch(asyncio.get_running_loop())
        try:
            await scenario()
        finally:
            stop()

    asyncio.run(main())
    if executor.warm_up.thread is not None:
        executor.warm_up.thread.join(5)


def test_an_idle_loop_imports_the_writers_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    executor, started = _executor_with_recorded_warm_up(monkeypatch)

    async def scenario() -> None:
        await asyncio.sleep(0.4)  # waiting on requests: the loop thread uses ~no CPU

    _watch_through(executor, scenario)
    assert executor.warm_up.thread is not None
    assert started == [1, 2]


def test_the_result_imports_wait_for_the_next_idle_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    # the loop busy after the writer's imports (requests in flight, a CPU-bound client):
    # ``datasets`` waits for the loop to idle again (the run's tail), not to compete with it
    executor, started = _executor_with_recorded_warm_up(monkeypatch)
    seen: list[list[int]] = []

    async def scenario() -> None:
        await asyncio.sleep(0.15)  # idle: the writer's imports start
        await _compute(0.6)  # busy for 0.6 s: the loop thread computes between its awaits
        seen.append(list(started))
        await asyncio.sleep(0.4)  # idle again

    _watch_through(executor, scenario)
    assert executor.warm_up.thread is not None
    assert seen == [[1]]
    assert started == [1, 2]


def test_an_announced_wait_starts_the_writers_within_it_and_holds_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the request scheduler announces its first request's grace: the writer's imports start
    # within it (no quiet tick to wait for), ``datasets`` not during the wait (a burst
    # follows it), nor in a short idle moment after it, only once the loop stays idle
    executor, started = _executor_with_recorded_warm_up(monkeypatch)
    seen: list[list[int]] = []

    async def scenario() -> None:
        idle_ahead(0.3)
        await asyncio.sleep(0.06)  # idle: the writer's imports start (no tick to wait for)
        assert executor.warm_up.thread is not None
        executor.warm_up.thread.join(5)
        seen.append(list(started))
        await asyncio.sleep(0.3)  # the rest of the announced wait: idle, nothing more starts
        seen.append(list(started))
        await _compute(0.4)  # the burst after it: busy
        await asyncio.sleep(0.15)  # a short idle moment (its first answers not back yet)
        await _compute(0.3)  # busy again
        seen.append(list(started))
        await asyncio.sleep(0.8)  # the tail: idle

    _watch_through(executor, scenario)
    assert seen == [[1], [1], [1]]
    assert started == [1, 2]


def test_an_announced_wait_too_short_for_the_imports_leaves_them_to_quiet_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the first request's default grace (0.1 s) against a slow model: the imports would run
    # on into the burst that follows it, so they wait for the lull after the burst
    executor, started = _executor_with_recorded_warm_up(monkeypatch)
    seen: list[list[int]] = []

    async def scenario() -> None:
        idle_ahead(0.1)
        await asyncio.sleep(0.1)  # the whole grace: idle, yet too short for the imports
        seen.append(list(started))
        await _compute(0.4)  # the burst after it: busy
        seen.append(list(started))
        await asyncio.sleep(0.25)  # the lull before the first answers: quiet ticks
        seen.append(list(started))
        await _compute(0.3)  # the answers: busy
        await asyncio.sleep(0.4)  # the tail: idle

    _watch_through(executor, scenario)
    assert seen[:2] == [[], []]
    assert seen[2][:1] == [1]  # the writer's imports in the lull (``datasets`` may follow)
    assert started == [1, 2]


def test_an_announced_wait_that_ends_at_once_leaves_the_imports_to_quiet_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a fast server: the first reply is back in milliseconds and the loop computes again, so
    # an import in a thread would only slow it; it waits for the loop to idle
    executor, started = _executor_with_recorded_warm_up(monkeypatch)
    seen: list[list[int]] = []

    async def scenario() -> None:
        idle_ahead(0.5)
        await asyncio.sleep(0.005)
        idle_ahead(0.0)  # the first reply is back: the wait is over
        await _compute(0.3, slice_s=0.05)  # busy
        seen.append(list(started))
        await asyncio.sleep(0.8)  # then idle

    _watch_through(executor, scenario)
    assert executor.warm_up.thread is not None
    assert seen == [[]]
    assert started == [1, 2]


def test_the_watch_stops_with_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    executor, started = _executor_with_recorded_warm_up(monkeypatch)

    async def main() -> None:
        executor.warm_up.watch(asyncio.get_running_loop())()
        await asyncio.sleep(0.3)

    asyncio.run(main())
    assert executor.warm_up.thread is None
    assert started == []


def test_the_watch_stops_with_an_announced_wait_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    # the run ends within the first request's grace: nothing starts after the watch stopped
    executor, started = _executor_with_recorded_warm_up(monkeypatch)

    async def main() -> None:
        stop = executor.warm_up.watch(asyncio.get_running_loop())
        idle_ahead(0.5)
        stop()
        await asyncio.sleep(0.3)

    asyncio.run(main())
    assert executor.warm_up.thread is None
    assert started == []
