"""Inspecting and cleaning the cache: list_runs, show_run, delete_run, clear_cache."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from alambic.errors import StoreError
from alambic.pipeline.runs import RunInfo, clear_cache, delete_run, list_runs, show_run
from alambic.pipeline.store import RequestCacheStore, RunStore, default_cache_dir

SIG1 = "1" * 64
SIG2 = "2" * 64
A = "a" * 64
B = "b" * 64


def open_store(cache_dir: Path, name: str = "demo", sig: str = SIG1) -> RunStore:
    return RunStore.open(
        cache_dir=cache_dir,
        pipeline_name=name,
        pipeline_signature=sig,
        pipeline_yaml=f"pipeline: {{name: {name}}}\n",
    )


def rows(n: int, tag: str = "r") -> list[dict[str, object]]:
    return [{"tag": tag, "i": i} for i in range(n)]


def two_runs(cache_dir: Path) -> Path:
    """Run 1 finishes step a and fails half-way in b; run 2 resumes and finishes b."""
    with open_store(cache_dir) as store:
        store.begin_run()
        store.record_step(A, "load", {"type": "Load", "api_key": "**********"})
        store.record_step(B, "gen", {"type": "Gen"})
        store.commit_unit(A, 0, rows(3), step_name="load")
        store.commit_unit(A, 1, rows(3), step_name="load", last=True)
        store.commit_unit(B, 0, rows(3), step_name="gen")
        store.finish_run("failed")
        store.begin_run()
        store.record_step(A, "load", {"type": "Load", "api_key": "**********"})
        store.record_step(B, "gen", {"type": "Gen"})
        store.commit_unit(B, 1, rows(2), step_name="gen", last=True)
        store.finish_run("finished")
        (store.run_dir / "data" / "gen").mkdir()
        (store.run_dir / "data" / "gen" / "00000.parquet").write_bytes(b"x")
        return store.run_dir


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_empty_cache_has_no_runs(tmp_path: Path) -> None:
    assert list_runs(tmp_path / "nothing-here") == []


def test_list_runs_reports_status_and_rows_per_step(tmp_path: Path) -> None:
    run_dir = two_runs(tmp_path)
    first, second = list_runs(tmp_path)
    assert (first.pipeline_name, first.pipeline_signature) == ("demo", SIG1)
    assert (first.run_id, first.status) == (1, "failed")
    assert (second.run_id, second.status) == (2, "finished")
    assert first.path == second.path == run_dir
    assert second.rows_per_step == {"load": 6, "gen": 5}
    load, gen = second.steps
    assert (load.name, load.signature, load.units, load.finished) == ("load", A, 2, True)
    assert (gen.units, gen.finished, gen.rows_this_run) == (2, True, 2)
    assert load.rows_this_run == 0  # answered entirely from run 1
    assert [s.rows_this_run for s in first.steps] == [6, 3]
    assert second.started_at is not None
    assert second.finished_at is not None
    assert second.finished_at >= second.started_at
    assert isinstance(second, RunInfo)
    with pytest.raises(AttributeError):
        second.status = "changed"  # type: ignore[misc]


def test_list_runs_defaults_to_the_configured_cache_dir() -> None:
    two_runs(default_cache_dir())
    assert [r.run_id for r in list_runs()] == [1, 2]


def test_running_and_crashed_runs(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.begin_run()
    store.commit_unit(A, 0, rows(4), step_name="load")
    store.flush()
    (run,) = list_runs(tmp_path)
    assert (run.status, run.rows_per_step) == ("running", {"load": 4})
    store.close()  # never finished: its process is still alive but no longer holds the lock
    assert list_runs(tmp_path)[0].status == "crashed"
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET pid = ?", (dead_pid(),))
    assert list_runs(tmp_path)[0].status == "crashed"


def test_an_unreadable_store_does_not_hide_the_others(tmp_path: Path) -> None:
    two_runs(tmp_path)
    with open_store(tmp_path, name="broken", sig=SIG2) as store:
        path = store.path
    path.write_bytes(b"garbage" * 1000)
    runs = list_runs(tmp_path)
    broken = [r for r in runs if r.status == "unreadable"]
    assert [r.run_id for r in runs if r.status != "unreadable"] == [1, 2]
    assert len(broken) == 1
    assert broken[0].pipeline_name == "broken"
    assert broken[0].error is not None
    assert str(path) in broken[0].error
    with pytest.raises(StoreError, match="corrupt"):
        show_run("broken", cache_dir=tmp_path)


def test_show_run(tmp_path: Path) -> None:
    run_dir = two_runs(tmp_path)
    latest = show_run("demo", cache_dir=tmp_path)
    assert latest.run.run_id == 2
    assert latest.pipeline_yaml == "pipeline: {name: demo}\n"
    assert latest.definitions == {
        "load": {"type": "Load", "api_key": "**********"},
        "gen": {"type": "Gen"},
    }
    assert show_run("demo", 1, cache_dir=tmp_path).run.status == "failed"
    assert show_run(run_dir.name, cache_dir=tmp_path).run.run_id == 2
    assert show_run(SIG1[:8], cache_dir=tmp_path).run.run_id == 2
    with pytest.raises(StoreError, match=r"No pipeline 'nope' .* Pipelines there: demo-1111"):
        show_run("nope", cache_dir=tmp_path)
    with pytest.raises(StoreError, match="has no run 7 recorded"):
        show_run("demo", 7, cache_dir=tmp_path)


def test_show_run_across_two_definitions_of_one_pipeline(tmp_path: Path) -> None:
    two_runs(tmp_path)
    with open_store(tmp_path, sig=SIG2) as store:
        store.begin_run()
        store.finish_run("interrupted")
    assert show_run("demo", cache_dir=tmp_path).run.status == "interrupted"
    with pytest.raises(StoreError, match="several definitions"):
        show_run("demo", 1, cache_dir=tmp_path)
    assert show_run(f"demo-{SIG2[:16]}", 1, cache_dir=tmp_path).run.status == "interrupted"


def test_delete_one_run_removes_what_it_committed(tmp_path: Path) -> None:
    run_dir = two_runs(tmp_path)
    assert delete_run("demo", 2, cache_dir=tmp_path) == 1
    (run,) = list_runs(tmp_path)
    assert run.run_id == 1
    assert run.rows_per_step == {"load": 6, "gen": 3}
    assert not (run_dir / "data" / "gen").exists()  # derived output of the affected step
    with open_store(tmp_path) as store:
        assert store.step_finished(A)
        assert not store.step_finished(B)  # its last unit was run 2's
        assert store.committed_units(B) == 1
    with pytest.raises(StoreError, match="has no run 2"):
        delete_run("demo", 2, cache_dir=tmp_path)


def test_delete_every_run_of_a_pipeline(tmp_path: Path) -> None:
    run_dir = two_runs(tmp_path)
    with open_store(tmp_path, name="other", sig=SIG2) as store:
        store.begin_run()
        store.finish_run("finished")
    assert delete_run("demo", cache_dir=tmp_path) == 2
    assert not run_dir.exists()
    assert [r.pipeline_name for r in list_runs(tmp_path)] == ["other"]


def test_delete_refuses_a_running_pipeline(tmp_path: Path) -> None:
    two_runs(tmp_path)
    with open_store(tmp_path) as store:
        with pytest.raises(StoreError, match="is running"):
            delete_run("demo", cache_dir=tmp_path)
        with pytest.raises(StoreError, match="is running"):
            delete_run("demo", 1, cache_dir=tmp_path)
        assert store.committed_units(A) == 2


def test_clear_cache(tmp_path: Path) -> None:
    two_runs(tmp_path)
    with RequestCacheStore.open(tmp_path / "requests.sqlite") as cache:
        cache.put_many([("k", {"text": "t", "input_tokens": 1, "output_tokens": 1})])
    clear_cache(tmp_path, requests=False)
    assert list_runs(tmp_path) == []
    assert (tmp_path / "requests.sqlite").exists()
    two_runs(tmp_path)
    clear_cache(tmp_path, pipelines=False)
    assert not (tmp_path / "requests.sqlite").exists()
    assert len(list_runs(tmp_path)) == 2
    clear_cache(tmp_path)
    assert list_runs(tmp_path) == []
    clear_cache(tmp_path)  # nothing left: no error


def test_clear_cache_is_all_or_nothing_while_something_runs(tmp_path: Path) -> None:
    two_runs(tmp_path)
    request_path = tmp_path / "requests.sqlite"
    with RequestCacheStore.open(request_path) as cache:
        cache.put_many([("k", {"text": "t", "input_tokens": 1, "output_tokens": 1})])
        with pytest.raises(StoreError, match=r"request cache .* is open in a running"):
            clear_cache(tmp_path)
        assert len(list_runs(tmp_path)) == 2  # the pipelines were not deleted either
        assert cache.get_many(["k"])[0] is not None
    with open_store(tmp_path, name="busy", sig=SIG2):
        with pytest.raises(StoreError, match="is running"):
            clear_cache(tmp_path)
        assert request_path.exists()
