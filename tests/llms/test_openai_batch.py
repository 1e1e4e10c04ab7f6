"""OpenAILLM(use_batch_api=True) against the local Batch API server, through the SDK.

Jobs finish in stages; some requests are refused, some jobs expire; runs are SIGKILLed while
a file uploads, after a job was created but before the client heard of it, and while jobs
are polled. Then a rerun: exact rows, and no request is ever submitted twice (counted by
the server per custom_id).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alambic.llms import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration
from alambic.testing.openai_batch_server import BatchServerConfig, OpenAIBatchTestServer

SCRIPT = Path(__file__).with_name("batch_script.py")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"instruction": f"q {i}" + (" bad" if i % 7 == 3 else "")} for i in range(n)]


def _pipeline(url: str, n: int, *, refused: bool = True, **llm: Any) -> Pipeline:
    rows = [r for r in _rows(n) if refused or not r["instruction"].endswith(" bad")]
    with Pipeline(name="batch") as pipeline:
        load = LoadDataFromDicts(data=rows)
        settings: dict[str, Any] = {
            "batch_collect_s": 0.05,
            "batch_poll_s": 0.02,
            "batch_poll_max_s": 0.1,
            "generation_kwargs": {"max_new_tokens": 8},
            **llm,
        }
        gen = TextGeneration(
            name="gen",
            llm=OpenAILLM(model="gpt-4o-mini", base_url=url, use_batch_api=True, **settings),
        )
        load >> gen
    return pipeline


def test_batch_rows_failures_and_cache() -> None:
    config = BatchServerConfig(stages=3, stage_s=0.05, fail_on=["bad"])
    with OpenAIBatchTestServer(config) as server:
        pipeline = _pipeline(server.base_url, 25, batch_max_requests=10)
        rows = pipeline.run(show_progress=False)["default"]["train"].to_list()
        stats = server.stats
        assert len(rows) == 25
        for i, row in enumerate(rows):
            if i % 7 == 3:
                assert row["generation"] is None
                assert (
                    "refused by the test server" in row["alambic_metadata"]["error_gen"]["message"]
                )
            else:
                assert row["generation"] == f"reply to: q {i}"
        assert stats["requests_submitted"] == 25
        assert stats["submitted_twice"] == []
        sizes = [len(job.lines) for job in server.state.jobs.values()]
        assert max(sizes) <= 10  # batch_max_requests
        assert stats["jobs"] >= 3
        assert stats["statuses"] == {"completed": stats["jobs"]}

        # the answers are in the request cache: a non-batch run of the answered prompts sends
        # nothing (this server has no chat endpoint: a request would stop the run)
        plain = _pipeline(server.base_url, 25, refused=False, batch_max_requests=10)
        plain.get_step("gen").llm.use_batch_api = False  # type: ignore[attr-defined]
        again = plain.run(show_progress=False, use_cache=False)["default"]["train"].to_list()
        assert [r["generation"] for r in again if r["generation"] is not None] == [
            r["generation"] for r in rows if r["generation"] is not None
        ]
        assert server.stats["requests_submitted"] == 25


def test_azure_batch_through_the_azure_client() -> None:
    from alambic.llms import AzureOpenAILLM

    with OpenAIBatchTestServer(BatchServerConfig(stages=2, stage_s=0.05)) as server:
        with Pipeline(name="azure-batch") as pipeline:
            load = LoadDataFromDicts(data=[{"instruction": f"q {i}"} for i in range(6)])
            llm = AzureOpenAILLM(
                model="my-deployment",
                base_url=server.base_url.removesuffix("/v1"),
                api_version="2024-10-21",
                api_key="test-key",
                use_batch_api=True,
                batch_collect_s=0.05,
                batch_poll_s=0.02,
            )
            load >> TextGeneration(name="gen", llm=llm)
        rows = pipeline.run(show_progress=False)["default"]["train"].to_list()
        stats = server.stats
        job = next(iter(server.state.jobs.values()))
    assert [r["generation"] for r in rows] == [f"reply to: q {i}" for i in range(6)]
    assert stats["requests_submitted"] == 6
    assert {line["url"] for line in job.lines} == {"/chat/completions"}
    assert {line["body"]["model"] for line in job.lines} == {"my-deployment"}


def test_expired_job_resubmits_only_unanswered_requests() -> None:
    config = BatchServerConfig(stages=4, stage_s=0.05, expire_after_stages=1)
    with OpenAIBatchTestServer(config) as server:
        pipeline = _pipeline(server.base_url, 8, batch_max_requests=8, batch_collect_s=0.5)
        state = server.state
        # the first job expires with a quarter answered; later jobs complete
        original = state.advance

        def advance(job: Any, now: float) -> None:
            if job.id != min(state.jobs):
                state.config.expire_after_stages = None
            original(job, now)
            state.config.expire_after_stages = 1

        state.advance = advance  # type: ignore[method-assign]
        rows = pipeline.run(show_progress=False)["default"]["train"].to_list()
        stats = server.stats
    assert [r["generation"] for r in rows] == [
        f"reply to: q {i}" + ("" if i % 7 != 3 else " bad") for i in range(8)
    ]
    assert stats["statuses"] == {"expired": 1, "completed": 1}
    assert stats["requests_submitted"] == 8 + 6  # 2 answered before expiry, 6 sent again
    assert len(stats["submitted_twice"]) == 6


def test_a_failed_job_fails_its_rows_with_the_reason() -> None:
    config = BatchServerConfig(stages=1, stage_s=0.02, fail_jobs=True)
    with OpenAIBatchTestServer(config) as server:
        rows = _pipeline(server.base_url, 3).run(show_progress=False)
        stats = server.stats
    for row in rows["default"]["train"].to_list():
        assert row["generation"] is None
        message = row["alambic_metadata"]["error_gen"]["message"]
        assert "ended 'failed' without an answer: the test server failed this job" in message
    assert stats["statuses"] == {"failed": 1}
    assert stats["requests_submitted"] == 3
    assert stats["files"] == 1  # the upload: a failed job has no output or error file


def _spawn(url: str, n: int, out: Path, cache: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ALAMBIC_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), url, str(n), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()!r}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["uploading", "created-not-recorded", "polling"])
def test_sigkill_then_rerun_submits_no_request_twice(tmp_path: Path, moment: str) -> None:
    n = 30
    config = BatchServerConfig(stages=3, stage_s=0.3)
    if moment == "uploading":
        config.upload_delay_s = 3.0
    elif moment == "created-not-recorded":
        config.create_delay_s = 3.0
    cache, out = tmp_path / "cache", tmp_path / "rows.json"
    with OpenAIBatchTestServer(config) as server:
        proc = _spawn(server.base_url, n, out, cache)
        state = server.state
        if moment == "uploading":
            _wait(lambda: state.uploads_started >= 1, proc, "an upload started")
        elif moment == "created-not-recorded":
            _wait(lambda: len(state.jobs) >= 1, proc, "a job was created")
        else:
            _wait(lambda: state.polls >= 2, proc, "jobs were polled")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = server.stats
        config.upload_delay_s = config.create_delay_s = 0.0
        rerun = _spawn(server.base_url, n, out, cache)
        assert rerun.wait(timeout=120) == 0, rerun.stderr.read()  # type: ignore[union-attr]
        stats = server.stats
    rows = json.loads(out.read_text())
    assert rows == [
        {"instruction": f"question {i}", "generation": f"reply to: question {i}"} for i in range(n)
    ]
    assert stats["submitted_twice"] == []
    assert stats["requests_submitted"] == n
    if moment != "uploading":
        assert before["requests_submitted"] > 0  # the killed run had jobs the rerun adopted
