"""Issue 11 #3: rows that failed for a transient reason are retried by the next run.

A real OpenAI-compatible server on 127.0.0.1 answers 500 to every request during the first
run (an outage), then recovers. The rerun sends exactly the failed rows again and returns
every row; ``retry_failed=False`` keeps the failed rows and sends nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alambic.errors import METADATA_COLUMN
from alambic.llms.openai import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks.text_generation import TextGeneration
from alambic.testing.openai_server import OpenAITestServer, ServerConfig

ROWS = 30


def _recorded_failures(cache: Path) -> list[tuple[str, str]]:
    """The failed-row counts the run store recorded, per run (what list_runs shows)."""
    import sqlite3

    (store,) = cache.glob("pipelines/*/store.sqlite")
    with sqlite3.connect(store) as conn:
        return conn.execute(
            "SELECT key, value FROM meta WHERE key LIKE 'failed_rows:%' ORDER BY key"
        ).fetchall()


def _pipeline(url: str, cache: Path) -> Pipeline:
    with Pipeline(name="outage", cache_dir=cache, enable_metadata=True) as p:
        load = LoadDataFromDicts(
            data=[{"instruction": f"q{i}"} for i in range(ROWS)], batch_size=10
        )
        llm = OpenAILLM(
            model="test-model", base_url=url, api_key="k", max_retries=0, max_concurrency=1
        )
        gen = TextGeneration(name="gen", llm=llm, input_batch_size=10)
        load >> gen
    return p


def _outage(server: OpenAITestServer, cache: Path, failing: set[int]) -> list[dict[str, Any]]:
    # rows in `failing` get a 500; the others an answer (the server answers in order)
    server.update(status_sequence=[500 if i in failing else 200 for i in range(ROWS)])
    rows = _pipeline(server.base_url, cache).run(show_progress=False)["default"]["train"]
    return rows.to_list()


@pytest.mark.slow
def test_a_rerun_retries_the_rows_an_outage_failed(tmp_path: Path) -> None:
    failing = {3, 4, 17}
    with OpenAITestServer(ServerConfig()) as server:
        first = _outage(server, tmp_path, failing)
        failed = [i for i, r in enumerate(first) if r["generation"] is None]
        assert len(failed) == len(failing)
        assert all(first[i][METADATA_COLUMN]["error_gen"]["kind"] == "server" for i in failed)
        sent = server.stats["total_requests"]
        assert sent == ROWS
        assert _recorded_failures(tmp_path) == [("failed_rows:1", "3"), ("failed_rows:last", "3")]

        server.update(status_sequence=[])
        again = _pipeline(server.base_url, tmp_path).run(show_progress=False)
        rows = again["default"]["train"].to_list()
        assert [r["instruction"] for r in rows] == [f"q{i}" for i in range(ROWS)]
        assert all(r["generation"] == f"reply to: q{i}" for i, r in enumerate(rows))
        # only the failed rows were asked again: the others came from the request cache
        assert server.stats["total_requests"] - sent == len(failing)
        assert ("failed_rows:2", "0") in _recorded_failures(tmp_path)


@pytest.mark.slow
def test_retry_failed_false_keeps_the_failed_rows(tmp_path: Path) -> None:
    with OpenAITestServer(ServerConfig()) as server:
        server.update(status_sequence=[500] * ROWS)
        first = _pipeline(server.base_url, tmp_path).run(show_progress=False)
        assert first["default"]["train"]["generation"] == [None] * ROWS
        sent = server.stats["total_requests"]
        server.update(status_sequence=[])
        kept = _pipeline(server.base_url, tmp_path).run(show_progress=False, retry_failed=False)
        assert kept["default"]["train"]["generation"] == [None] * ROWS
        assert server.stats["total_requests"] == sent
        only_auth = _pipeline(server.base_url, tmp_path).run(
            show_progress=False, retry_failed=["authentication"]
        )
        assert only_auth["default"]["train"]["generation"] == [None] * ROWS
        assert server.stats["total_requests"] == sent
        retried = _pipeline(server.base_url, tmp_path).run(show_progress=False)
        assert retried["default"]["train"]["generation"] == [f"reply to: q{i}" for i in range(ROWS)]
        assert server.stats["total_requests"] == sent + ROWS
