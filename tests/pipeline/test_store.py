"""RunStore and RequestCacheStore: what is committed comes back whole, in order, after reopening."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import StoreError
from alambic.llms.cache import CachedGeneration, request_key
from alambic.llms.fake import FakeLLM
from alambic.pipeline.store import (
    RequestCacheStore,
    RunStore,
    default_cache_dir,
    pipeline_dir,
    request_cache_path,
)

SIG = "0123456789abcdef" * 4
A = "a" * 64
B = "b" * 64


def open_store(cache_dir: Path, **kwargs: Any) -> RunStore:
    return RunStore.open(
        cache_dir=cache_dir,
        pipeline_name="demo",
        pipeline_signature=SIG,
        pipeline_yaml="pipeline: {name: demo}\n",
        **kwargs,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    s = open_store(tmp_path)
    yield s
    s.close()


def rows_for(seq: int, n: int = 3) -> list[dict[str, Any]]:
    return [{"seq": seq, "i": i, "text": f"row {seq}.{i}"} for i in range(n)]


# -- paths --------------------------------------------------------------------------------


def test_default_cache_dir_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ALAMBIC_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("ALAMBIC_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "alambic"


def test_store_lives_in_a_folder_named_after_the_pipeline(tmp_path: Path, store: RunStore) -> None:
    assert store.run_dir == tmp_path / "pipelines" / f"demo-{SIG[:16]}"
    assert store.path == store.run_dir / "store.sqlite"
    assert (store.run_dir / "data").is_dir()
    weird = pipeline_dir(tmp_path, "my pipeline/../x", SIG)
    assert weird.parent == tmp_path / "pipelines"
    assert weird.name == f"my_pipeline_.._x-{SIG[:16]}"
    assert request_cache_path(tmp_path) == tmp_path / "requests.sqlite"
    assert request_cache_path(tmp_path, store.run_dir) == store.run_dir / "requests.sqlite"


def test_file_is_sqlite_in_wal_mode(store: RunStore) -> None:
    store.commit_unit(A, 0, rows_for(0), step_name="a")
    store.flush()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM units").fetchone()[0] == 1


# -- units --------------------------------------------------------------------------------


def test_units_round_trip_with_nested_values_and_bytes(store: RunStore) -> None:
    rows = [
        {
            "text": "héllo",
            "n": 3,
            "x": 0.25,
            "ok": True,
            "none": None,
            "blob": b"\x00\xff",
            "nested": {"a": [1, {"b": None}], "c": [[1.5, "s"]]},
        },
        {"text": "", "n": -1, "x": float("inf"), "ok": False, "none": None},
    ]
    store.commit_unit(A, 0, rows, step_name="a")
    assert store.load_unit(A, 0) == rows


def test_rows_are_copied_when_committed(store: RunStore) -> None:
    rows = rows_for(0)
    store.commit_unit(A, 0, rows, step_name="a")
    rows[0]["text"] = "mutated by a successor"
    rows.append({"seq": 9})
    assert store.load_unit(A, 0) == rows_for(0)


def test_committed_units_counts_the_contiguous_prefix(store: RunStore) -> None:
    assert store.committed_units(A) == 0
    for seq in (0, 1, 3):
        store.commit_unit(A, seq, rows_for(seq, n=seq + 1), step_name="a")
    assert store.committed_units(A) == 2
    assert store.unit_row_counts(A) == [1, 2]
    store.commit_unit(A, 2, rows_for(2, n=3), step_name="a")
    assert store.committed_units(A) == 4
    assert store.unit_row_counts(A) == [1, 2, 3, 4]
    assert list(store.iter_rows(A)) == [r for s in range(4) for r in rows_for(s, n=s + 1)]
    assert store.committed_units(B) == 0


def test_everything_survives_reopening(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.begin_run()
        for seq in range(5):
            store.commit_unit(A, seq, rows_for(seq), step_name="a", source_rows=3 * (seq + 1))
        store.commit_unit(B, 0, rows_for(0, n=2), step_name="b", last=True)
        store.finish_run("finished")
    with open_store(tmp_path) as store:
        assert store.committed_units(A) == 5
        assert [store.load_unit(A, s) for s in range(5)] == [rows_for(s) for s in range(5)]
        assert store.generator_offset(A) == 15
        assert not store.step_finished(A)
        assert store.step_finished(B)
        assert store.unit_row_counts(B) == [2]


def test_generator_offset(store: RunStore) -> None:
    assert store.generator_offset(A) == 0
    store.commit_unit(A, 0, rows_for(0, n=4), step_name="gen", source_rows=10)
    store.commit_unit(A, 1, rows_for(1, n=4), step_name="gen", source_rows=25)
    store.commit_unit(A, 3, rows_for(3, n=4), step_name="gen", source_rows=99)
    assert store.generator_offset(A) == 25  # seq 2 is missing: resume after seq 1
    # without source_rows, the rows of the prefix count
    store.commit_unit(B, 0, rows_for(0, n=4), step_name="other")
    store.commit_unit(B, 1, rows_for(1, n=3), step_name="other")
    assert store.generator_offset(B) == 7


def test_step_finished_needs_every_unit_up_to_the_last(store: RunStore) -> None:
    store.commit_unit(A, 1, rows_for(1), step_name="a", last=True)
    assert not store.step_finished(A)
    store.commit_unit(A, 0, rows_for(0), step_name="a")
    assert store.step_finished(A)
    store.commit_unit(B, 0, [], step_name="empty", last=True)
    assert store.step_finished(B)
    assert store.load_unit(B, 0) == []


def test_invalidate_step_drops_its_units_only(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        for seq in range(3):
            store.commit_unit(A, seq, rows_for(seq), step_name="a", last=seq == 2)
        store.commit_unit(B, 0, rows_for(0), step_name="b", last=True)
        store.invalidate_step(A)
        assert store.committed_units(A) == 0
        assert not store.step_finished(A)
        store.commit_unit(A, 0, [{"new": True}], step_name="a")
    with open_store(tmp_path) as store:
        assert store.committed_units(A) == 1
        assert store.load_unit(A, 0) == [{"new": True}]
        assert not store.step_finished(A)
        assert store.step_finished(B)


def test_prune_steps_keeps_only_current_signatures(store: RunStore) -> None:
    store.commit_unit(A, 0, rows_for(0), step_name="a")
    store.commit_unit(A, 1, rows_for(1), step_name="a")
    store.commit_unit(B, 0, rows_for(0), step_name="b")
    assert store.prune_steps({B}) == 2
    assert store.committed_units(A) == 0
    assert store.committed_units(B) == 1


def test_load_unit_that_is_not_committed_raises(store: RunStore) -> None:
    store.commit_unit(A, 0, rows_for(0), step_name="a")
    with pytest.raises(StoreError, match=r"Unit 3 .* not committed .*1 contiguous"):
        store.load_unit(A, 3)


def test_unpicklable_rows_raise_a_store_error_naming_the_step(store: RunStore) -> None:
    with pytest.raises(StoreError, match="Step 'gen' produced a batch that cannot be stored"):
        store.commit_unit(A, 0, [{"lock": threading.Lock()}], step_name="gen")
    assert store.committed_units(A) == 0


# -- runs ---------------------------------------------------------------------------------


def test_runs_are_numbered_and_keep_their_status(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        assert store.begin_run() == 1
        store.finish_run("failed")
        assert store.begin_run() == 2
        with pytest.raises(ValueError, match="Unknown run status 'done'"):
            store.finish_run("done")
        store.finish_run("finished")
    with sqlite3.connect(tmp_path / "pipelines" / f"demo-{SIG[:16]}" / "store.sqlite") as conn:
        got = conn.execute("SELECT id, status, finished_at IS NOT NULL FROM runs").fetchall()
    assert got == [(1, "failed", 1), (2, "finished", 1)]


def test_finish_run_without_begin_raises(store: RunStore) -> None:
    with pytest.raises(StoreError, match="without begin_run"):
        store.finish_run("finished")


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="is closed"):
        store.commit_unit(A, 0, [], step_name="a")


# -- request cache ------------------------------------------------------------------------


def gen(text: str | None, i: int = 1, o: int = 2) -> CachedGeneration:
    return {"text": text, "input_tokens": i, "output_tokens": o}


def test_request_cache_round_trip_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    with RequestCacheStore.open(path) as cache:
        assert cache.get_many(["k1", "k2"]) == [None, None]
        cache.put_many([("k1", gen("one")), ("k2", gen(None, 3, 0))])
        # readable at once, committed or not
        assert cache.get_many(["k2", "k3", "k1"]) == [gen(None, 3, 0), None, gen("one")]
        assert (cache.hits, cache.misses) == (2, 3)
    with RequestCacheStore.open(path) as cache:
        assert cache.get_many(["k1", "k2"]) == [gen("one"), gen(None, 3, 0)]
        assert len(cache) == 2
        cache.put_many([("k1", gen("replaced"))])
        assert cache.get_many(["k1"]) == [gen("replaced")]


def test_request_cache_many_keys_at_once(tmp_path: Path) -> None:
    with RequestCacheStore.open(tmp_path / "r.sqlite") as cache:
        cache.put_many([(f"k{i}", gen(f"t{i}", i, i)) for i in range(1200)])
        cache.flush()
        keys = [f"k{i}" for i in range(0, 1300, 1)]
        found = cache.get_many(keys)
    assert [f["text"] if f else None for f in found] == [f"t{i}" for i in range(1200)] + [
        None
    ] * 100


def test_request_cache_is_thread_safe(tmp_path: Path) -> None:
    cache = RequestCacheStore.open(tmp_path / "r.sqlite")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(200):
                cache.put_many([(f"{t}:{i}", gen(f"{t}-{i}"))])
                assert cache.get_many([f"{t}:{i}"]) == [gen(f"{t}-{i}")]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    cache.close()
    assert errors == []
    with RequestCacheStore.open(tmp_path / "r.sqlite") as cache:
        assert len(cache) == 800


def test_two_processes_worth_of_handles_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    with RequestCacheStore.open(path) as first, RequestCacheStore.open(path) as second:
        first.put_many([("a", gen("from first"))])
        first.flush()
        assert second.get_many(["a"]) == [gen("from first")]


def test_fake_llm_answers_repeats_from_the_persistent_cache(tmp_path: Path) -> None:
    path = tmp_path / "requests.sqlite"
    messages = [{"role": "user", "content": "hello"}]
    llm = FakeLLM()
    llm.load()
    with RequestCacheStore.open(path) as cache:
        llm.set_request_cache(cache)
        first = asyncio.run(llm.agenerate(messages, num_generations=3))
    assert len(llm.history) == 1
    with RequestCacheStore.open(path) as cache:
        llm.set_request_cache(cache)
        again = asyncio.run(llm.agenerate(messages, num_generations=3))
        assert cache.hits == 3
    assert len(llm.history) == 1
    assert again["generations"] == first["generations"]
    assert len(set(first["generations"])) == 3  # three samples, three keys
    base = llm._base_key(messages, llm.merged_generation_kwargs({}))
    with RequestCacheStore.open(path) as cache:
        found = cache.get_many([request_key(base, j) for j in range(3)])
    assert [f["text"] if f else None for f in found] == first["generations"]


def test_real_client_sends_each_request_once_and_no_secret_reaches_the_files(
    tmp_path: Path, openai_server: Any
) -> None:
    pytest.importorskip("openai")
    from alambic.llms.openai import OpenAILLM
    from alambic.steps.tasks.text_generation import TextGeneration

    secret = "sk-alambic-test-SECRET-4f9c2a"
    cache_dir = tmp_path / "cache"
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]

    async def ask(llm: OpenAILLM) -> list[Any]:
        try:
            return [await llm.agenerate(p, num_generations=2) for p in prompts]
        finally:
            await llm.aclose()

    def answer_all() -> tuple[list[Any], int]:
        llm = OpenAILLM(model="test-model", base_url=openai_server.base_url, api_key=secret)
        llm.load()
        with RequestCacheStore.open(request_cache_path(cache_dir)) as cache:
            llm.set_request_cache(cache)
            outputs = asyncio.run(ask(llm))
            task = TextGeneration(name="gen", llm=llm)
            with open_store(cache_dir) as store:
                store.begin_run()
                store.record_step(A, "gen", task.dump())
                rows = [{"q": i, "generation": o["generations"]} for i, o in enumerate(outputs)]
                store.commit_unit(A, 0, rows, step_name="gen", last=True)
                store.finish_run("finished")
                hits = cache.hits
        return outputs, hits

    first, hits = answer_all()
    assert hits == 0
    sent = openai_server.stats["total_requests"]
    assert sent >= 5
    second, hits = answer_all()
    assert hits == 10  # 5 prompts x 2 generations, each its own key
    assert openai_server.stats["total_requests"] == sent
    assert [o["generations"] for o in second] == [o["generations"] for o in first]

    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert any(p.name == "requests.sqlite" for p in files)
    assert any(p.name == "store.sqlite" for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


def test_request_cache_keeps_latency_and_retries_and_upgrades_an_older_file(
    tmp_path: Path,
) -> None:
    from alambic.pipeline.store.request_cache import (
        REQUEST_CACHE_APPLICATION_ID,
        REQUEST_CACHE_VERSION,
    )

    path = tmp_path / "requests.sqlite"
    old = sqlite3.connect(path)  # a file written before latency and retries were kept
    old.execute(
        "CREATE TABLE requests (key TEXT PRIMARY KEY, text TEXT, input_tokens INTEGER, "
        "output_tokens INTEGER, created_at REAL NOT NULL)"
    )
    old.execute("INSERT INTO requests VALUES ('old', 'earlier', 1, 2, 0.0)")
    old.execute(f"PRAGMA application_id={REQUEST_CACHE_APPLICATION_ID}")
    old.execute(f"PRAGMA user_version={REQUEST_CACHE_VERSION}")
    old.commit()
    old.close()
    timed: CachedGeneration = {**gen("timed"), "latency_s": 0.125, "retries": 2}
    with RequestCacheStore.open(path) as cache:
        assert cache.get_many(["old"]) == [gen("earlier")]
        cache.put_many([("timed", timed), ("plain", gen("plain"))])
        assert cache.get_many(["timed", "plain"]) == [timed, gen("plain")]  # pending
    with RequestCacheStore.open(path) as cache:
        assert cache.get_many(["timed", "plain", "old"]) == [timed, gen("plain"), gen("earlier")]
