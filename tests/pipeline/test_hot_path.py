"""What keeps the per-request path cheap: one cache query per loop iteration, the garbage
collector held off the run's heap, and fast reads of private attributes."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from alambic.llms.openai import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.pipeline.executor.lifecycle import GC_YOUNG_THRESHOLD, steady_gc
from alambic.pipeline.store import RequestCacheStore
from alambic.steps import LoadDataFromDicts, step


def test_the_lookups_of_one_loop_iteration_share_one_query(tmp_path: Path) -> None:
    with RequestCacheStore.open(tmp_path / "r.sqlite") as cache:
        cache.put_many(
            [
                (f"k{i}", {"text": f"t{i}", "input_tokens": 1, "output_tokens": 2})
                for i in range(0, 60, 2)
            ]
        )
        queries: list[str] = []
        cache._reader._conn.set_trace_callback(queries.append)  # type: ignore[attr-defined]

        async def main() -> list[list[object]]:
            return list(
                await asyncio.gather(
                    *(cache.aget_many([f"k{i}", f"k{i + 1}"]) for i in range(0, 50, 2))
                )
            )

        found = asyncio.run(main())
    selects = [q for q in queries if q.startswith("SELECT key")]
    assert len(selects) == 1  # 25 lookups, one query
    assert [f[0]["text"] for f in found] == [f"t{i}" for i in range(0, 50, 2)]  # type: ignore[index]
    assert all(f[1] is None for f in found)
    assert (cache.hits, cache.misses) == (25, 25)


def test_a_lookup_on_a_closed_cache_fails_every_waiter(tmp_path: Path) -> None:
    cache = RequestCacheStore.open(tmp_path / "r.sqlite")
    cache.close()

    async def main() -> list[object]:
        return list(
            await asyncio.gather(
                *(cache.aget_many(["k"]) for _ in range(3)), return_exceptions=True
            )
        )

    results = asyncio.run(main())
    assert [type(r).__name__ for r in results] == ["StoreError"] * 3


def test_steady_gc_freezes_the_heap_and_restores_the_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = gc.get_threshold()
    with steady_gc():
        assert gc.get_threshold()[0] == max(before[0], GC_YOUNG_THRESHOLD)
        assert gc.get_freeze_count() > 0
        with steady_gc():  # a second run overlapping in another thread
            pass
        assert gc.get_threshold()[0] == max(before[0], GC_YOUNG_THRESHOLD)  # still the first's
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    monkeypatch.setenv("ALAMBIC_GC_TUNING", "0")
    with steady_gc():
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


def test_a_run_leaves_the_collector_as_it_found_it() -> None:
    seen: list[tuple[int, int]] = []

    @step(inputs=["a"], outputs=["a"])
    def Look(inputs: list[dict[str, object]]):  # type: ignore[no-untyped-def]
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        yield inputs

    before = gc.get_threshold()
    with Pipeline(name="gc-policy") as pipeline:
        LoadDataFromDicts(data=[{"a": 1}]) >> Look(name="look")
    pipeline.run(use_cache=False, show_progress=False, storage=False)
    assert seen
    assert seen[0][0] == max(before[0], GC_YOUNG_THRESHOLD)
    assert seen[0][1] > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_private_attributes_read_fast_and_unknown_names_still_fail() -> None:
    llm = OpenAILLM(model="m")
    assert llm._request_cache is None
    llm._n_ignored = True
    assert llm._n_ignored is True
    with pytest.raises(AttributeError, match="_nope"):
        llm._nope  # noqa: B018
    with pytest.raises(AttributeError, match="nope"):
        llm.nope  # type: ignore[attr-defined]  # noqa: B018


def _loop_of_a_run() -> str:
    """The module of the event loop a pipeline run's requests are sent from."""
    from alambic.llms.fake import FakeLLM
    from alambic.steps.tasks import TextGeneration

    loops: list[str] = []

    def reply(messages: object, index: int) -> str:
        loops.append(type(asyncio.get_running_loop()).__module__)
        return "ok"

    with Pipeline(name="event-loop") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "a"}, {"instruction": "b"}])
        load >> TextGeneration(name="gen", llm=FakeLLM(reply_fn=reply))
    out = pipeline.run(use_cache=False, show_progress=False, storage=False)
    assert out["default"]["train"]["generation"] == ["ok", "ok"]
    assert len(set(loops)) == 1
    return loops[0]


def test_a_run_sends_its_requests_from_uvloop_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("uvloop")  # a dependency wherever it installs (not on Windows)
    assert _loop_of_a_run().startswith("uvloop")
    monkeypatch.setenv("ALAMBIC_EVENT_LOOP", "asyncio")
    assert _loop_of_a_run().startswith("asyncio")


def test_a_wrong_event_loop_setting_names_the_value_and_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alambic.errors import AlambicUserError
    from alambic.utils.aio import run_loop

    async def nothing() -> None:
        return None

    monkeypatch.setenv("ALAMBIC_EVENT_LOOP", "trio")
    coro = nothing()
    with pytest.raises(AlambicUserError, match=r"ALAMBIC_EVENT_LOOP='trio'.*uvloop.*asyncio"):
        run_loop(coro)
    coro.close()
    # a run refuses it before loading anything (a local model can take minutes to load)
    loaded: list[str] = []

    @step(inputs=["a"], outputs=["a"])
    def Keep(inputs: list[dict[str, object]]):  # type: ignore[no-untyped-def]
        yield inputs

    with Pipeline(name="bad-loop") as pipeline:
        keep = Keep(name="keep")
        LoadDataFromDicts(data=[{"a": 1}]) >> keep
    monkeypatch.setattr(type(keep), "load", lambda self: loaded.append(self.name))
    with pytest.raises(AlambicUserError, match="ALAMBIC_EVENT_LOOP='trio'"):
        pipeline.run(use_cache=False, show_progress=False, storage=False)
    assert loaded == []
