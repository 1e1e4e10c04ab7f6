"""The batch APIs of Anthropic (Message Batches), Mistral (batch jobs) and the Gemini API
(batch mode) through their official SDKs, against the local provider batch server.

Jobs finish in stages; some requests are refused, some jobs expire; runs are SIGKILLed while
a job is being sent, after the provider created a job but before the client heard of it,
and while jobs are polled. Then a rerun: exact rows, and no request is ever submitted twice
(counted by the server per request id).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration
from alambic.testing.provider_batch_server import JobsConfig, ProviderBatchTestServer

SCRIPT = Path(__file__).with_name("provider_batch_script.py")
_spec = importlib.util.spec_from_file_location("provider_batch_script", SCRIPT)
assert _spec is not None
assert _spec.loader is not None
_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_script)
PROVIDERS: tuple[str, ...] = _script.PROVIDERS
make_llm = _script.make_llm
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _prompt(i: int) -> str:
    if i % 7 == 3:
        return f"q {i} bad"
    return f"q {i} one two three four five six" if i % 5 == 1 else f"q {i}"


def _reply(i: int) -> str:  # max_new_tokens=8 reached the provider: 8 words at most
    return " ".join(f"reply to: {_prompt(i)}".split()[:8])


def _rows(n: int, refused: bool = True) -> list[dict[str, Any]]:
    rows = [{"instruction": _prompt(i)} for i in range(n)]
    return [r for r in rows if refused or not r["instruction"].endswith(" bad")]


def _pipeline(provider: str, url: str, rows: list[dict[str, Any]], **llm: Any) -> Pipeline:
    with Pipeline(name=f"batch-{provider}") as pipeline:
        load = LoadDataFromDicts(data=rows)
        load >> TextGeneration(name="gen", llm=make_llm(provider, url, **llm))
    return pipeline


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_rows_failures_and_cache(provider: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="alambic")
    config = JobsConfig(stages=3, stage_s=0.05, fail_on=["bad"])
    with ProviderBatchTestServer(config) as server:
        pipeline = _pipeline(provider, server.base_url, _rows(25), batch_max_requests=10)
        rows = pipeline.run(show_progress=False)["default"]["train"].to_list()
        stats = server.stats
        assert len(rows) == 25
        for i, row in enumerate(rows):
            if i % 7 == 3:
                assert row["generation"] is None
                message = row["alambic_metadata"]["error_gen"]["message"]
                assert "refused by the test server" in message
            else:
                assert row["generation"] == _reply(i)
        assert rows[1]["generation"] == "reply to: q 1 one two three four"
        assert stats["requests_submitted"] == 25
        assert stats["submitted_twice"] == []
        assert max(stats["job_sizes"]) <= 10  # batch_max_requests
        assert stats["jobs"] >= 3
        assert stats["states"] == {"completed": stats["jobs"]}
        # progress: jobs submitted / in progress / done and requests answered, in the log
        jobs = stats["jobs"]
        done = f"jobs: {jobs} submitted, 0 in progress, {jobs} done; 25 requests answered"
        assert any(done in r.getMessage() for r in caplog.records), caplog.text

        # the answers are in the request cache: a non-batch run of the answered prompts sends
        # nothing (this server has no chat endpoint: a request would fail its row)
        plain = _pipeline(provider, server.base_url, _rows(25, refused=False))
        plain.get_step("gen").llm.use_batch_api = False  # type: ignore[attr-defined]
        again = plain.run(show_progress=False, use_cache=False)["default"]["train"].to_list()
        assert [r["generation"] for r in again] == [
            r["generation"] for r in rows if r["generation"] is not None
        ]
        assert server.stats["requests_submitted"] == 25


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_job_resubmits_only_unanswered_requests(provider: str) -> None:
    config = JobsConfig(stages=4, stage_s=0.05, expire_after_stages=1)
    with ProviderBatchTestServer(config) as server:
        rows = [{"instruction": f"q {i}"} for i in range(8)]
        pipeline = _pipeline(provider, server.base_url, rows, batch_collect_s=0.5)
        state = server.state
        original = state.advance

        def advance(job: Any, now: float) -> None:  # only the first job expires
            state.config.expire_after_stages = 1 if job.id == min(state.jobs) else None
            original(job, now)

        state.advance = advance  # type: ignore[method-assign]
        out = pipeline.run(show_progress=False)["default"]["train"].to_list()
        stats = server.stats
    assert [r["generation"] for r in out] == [f"reply to: q {i}" for i in range(8)]
    assert stats["states"] == {"expired": 1, "completed": 1}
    assert stats["requests_submitted"] == 8 + 6  # 2 answered before expiry, 6 sent again
    assert len(stats["submitted_twice"]) == 6


_JOB_FAILURE = {
    "anthropic": "batch request refused: api_error: the test server failed this job",
    "mistral": "ended 'FAILED' without an answer: the test server failed this job",
    "gemini": "ended 'JOB_STATE_FAILED' without an answer",
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_failed_job_fails_its_rows_with_the_reason(provider: str) -> None:
    with ProviderBatchTestServer(JobsConfig(stages=1, stage_s=0.02, fail_jobs=True)) as server:
        rows = [{"instruction": f"q {i}"} for i in range(4)]
        out = _pipeline(provider, server.base_url, rows).run(show_progress=False)
        stats = server.stats
    for row in out["default"]["train"].to_list():
        assert row["generation"] is None
        assert _JOB_FAILURE[provider] in row["alambic_metadata"]["error_gen"]["message"]
    assert stats["requests_submitted"] == 4
    assert stats["states"] == {"failed": 1}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_rerun_sends_again_what_failed_for_a_passing_reason(provider: str) -> None:
    """Server errors (per request, or a whole failed job) are retried by a rerun; answered
    requests and requests refused as bad are not sent again."""
    config = JobsConfig(stages=1, stage_s=0.02, fail_on=["flaky"], fail_status=500)
    rows = [{"instruction": f"q {i}" + (" flaky" if i in (1, 4) else "")} for i in range(6)]
    with ProviderBatchTestServer(config) as server:
        first = _pipeline(provider, server.base_url, rows).run(show_progress=False)
        failed = [r["generation"] is None for r in first["default"]["train"].to_list()]
        assert failed == [False, True, False, False, True, False]
        config.fail_on = []
        again = _pipeline(provider, server.base_url, rows).run(show_progress=False)
        assert [r["generation"] for r in again["default"]["train"].to_list()] == [
            f"reply to: {r['instruction']}" for r in rows
        ]
        assert server.stats["requests_submitted"] == 6 + 2
        assert len(server.stats["submitted_twice"]) == 2

        config.fail_jobs = True  # a job failing as a whole: its requests go again on rerun
        others = [{"instruction": f"p {i}"} for i in range(3)]
        failed_job = _pipeline(provider, server.base_url, others).run(show_progress=False)
        assert [r["generation"] for r in failed_job["default"]["train"].to_list()] == [None] * 3
        config.fail_jobs = False
        rerun = _pipeline(provider, server.base_url, others).run(show_progress=False)
        assert [r["generation"] for r in rerun["default"]["train"].to_list()] == [
            f"reply to: p {i}" for i in range(3)
        ]
        assert server.stats["requests_submitted"] == 8 + 3 + 3


def test_batch_progress_while_a_job_runs() -> None:
    with ProviderBatchTestServer(JobsConfig(stages=2, stage_s=0.3)) as server:
        llm = make_llm("mistral", server.base_url)
        llm.load()
        seen: list[dict[str, Any]] = []

        async def main() -> list[Any]:
            answers = asyncio.gather(
                *(llm.agenerate([{"role": "user", "content": f"q {i}"}]) for i in range(3))
            )
            while not seen or seen[-1].get("jobs_in_progress") != 1:
                await asyncio.sleep(0.01)
                seen.append(llm.batch_progress() or {})
            out = await answers
            seen.append(llm.batch_progress() or {})
            await llm.aclose()
            return out

        out = asyncio.run(main())
    assert [o["generations"] for o in out] == [[f"reply to: q {i}"] for i in range(3)]
    assert seen[-2]["jobs_submitted"] == 1
    assert seen[-2]["jobs_done"] == 0
    assert seen[-1]["jobs_done"] == 1
    assert seen[-1]["jobs_in_progress"] == 0
    assert seen[-1]["requests_answered"] == 3
    assert seen[-1]["waited_s"] > 0.3
    assert llm.batch_progress() is None  # closed


def test_a_job_respects_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from alambic.llms import AnthropicLLM

    monkeypatch.setattr(AnthropicLLM, "batch_max_bytes", 1500)
    with ProviderBatchTestServer(JobsConfig(stages=1, stage_s=0.01)) as server:
        rows = [{"instruction": f"q {i} " + "x" * 200} for i in range(12)]
        pipeline = _pipeline("anthropic", server.base_url, rows, batch_collect_s=0.3)
        out = pipeline.run(show_progress=False)["default"]["train"].to_list()
        stats = server.stats
    assert [r["generation"] for r in out] == [f"reply to: q {i} " + "x" * 200 for i in range(12)]
    assert stats["requests_submitted"] == 12
    assert max(stats["job_sizes"]) <= 4  # ~330 bytes a request, 1,500 a job
    assert len(stats["job_sizes"]) >= 3


def test_gemini_batch_on_vertex_ai_is_refused_with_the_fix() -> None:
    from alambic.errors import AlambicUserError
    from alambic.llms import VertexAILLM

    llm = VertexAILLM(model="gemini-test", vertexai=True, project="p", use_batch_api=True)
    with pytest.raises(AlambicUserError, match="vertexai=False with a Gemini API key"):
        llm.load()


def _spawn(provider: str, url: str, n: int, out: Path, cache: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ALAMBIC_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), provider, url, str(n), str(out)],
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
@pytest.mark.parametrize("moment", ["submitting", "created-not-recorded", "polling"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_sigkill_then_rerun_submits_no_request_twice(
    tmp_path: Path, provider: str, moment: str
) -> None:
    n = 30
    config = JobsConfig(stages=3, stage_s=0.3)
    if moment == "submitting":
        config.submit_delay_s = 3.0
    elif moment == "created-not-recorded":
        config.create_delay_s = 3.0
    cache, out = tmp_path / "cache", tmp_path / "rows.json"
    with ProviderBatchTestServer(config) as server:
        proc = _spawn(provider, server.base_url, n, out, cache)
        state = server.state
        if moment == "submitting":
            _wait(lambda: state.submits_started >= 1, proc, "a job was being sent")
        elif moment == "created-not-recorded":
            _wait(lambda: len(state.jobs) >= 1, proc, "a job was created")
        else:
            _wait(lambda: state.polls >= 2, proc, "jobs were polled")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = server.stats
        config.submit_delay_s = config.create_delay_s = 0.0
        rerun = _spawn(provider, server.base_url, n, out, cache)
        assert rerun.wait(timeout=120) == 0, rerun.stderr.read()  # type: ignore[union-attr]
        stats = server.stats
    rows = json.loads(out.read_text())
    assert rows == [
        {"instruction": f"question {i}", "generation": f"reply to: question {i}"} for i in range(n)
    ]
    assert stats["submitted_twice"] == []
    assert stats["requests_submitted"] == n
    if moment != "submitting":
        assert before["requests_submitted"] > 0  # the killed run had jobs the rerun adopted
