"""Ray runs and the shared ledger: a run's spending cap kept across replicas (exact, and
across a driver SIGKILL), pacing against a strict window, and progress streamed from actors
while a batch is still in flight."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alambic.budget import Budget
from alambic.llms.openai import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.base import StepResources
from alambic.steps.tasks.text_generation import TextGeneration
from alambic.testing.openai_server import OpenAITestServer
from alambic.testing.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.xdist_group("ray")]

SCRIPT = Path(__file__).with_name("ray_script.py")


def _start(env: dict[str, str], out: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(SCRIPT), "--url", url, "--out", str(out), *extra]
    return subprocess.Popen(command, env=env, start_new_session=True)


def _generation(
    url: str, n: int, *, replicas: int, concurrency: int, batch: int = 4, **llm: Any
) -> Pipeline:
    with Pipeline(name="ray-ledger") as pipeline:
        load = LoadDataFromDicts(
            name="load", data=[{"instruction": f"question {i}"} for i in range(n)], batch_size=8
        )
        gen = TextGeneration(
            name="gen",
            llm=OpenAILLM(model="test-model", base_url=url, max_concurrency=concurrency, **llm),
            input_batch_size=batch,
            resources=StepResources(replicas=replicas, cpus=0.5),
        )
        load >> gen
    return pipeline


def test_a_request_budget_allows_exactly_k_across_two_replicas(
    local_ray: Any, openai_server: OpenAITestServer
) -> None:
    pipeline = _generation(openai_server.base_url, 30, replicas=2, concurrency=3)
    pipeline.run(show_progress=False, executor="ray", budget=Budget(requests=11))
    report = (pipeline.last_summary or {})["budget"]
    # both replicas claim from the one ledger: the server saw exactly the cap
    assert openai_server.stats["total_requests"] == 11
    assert report["total"]["requests"] == 11
    assert report["remaining"] == {"requests": 0}
    assert "11 requests reached" in report["stopped"]

    distiset = pipeline.run(show_progress=False, executor="ray", budget=Budget(requests=40))
    rows = distiset["default"]["train"].to_list()
    assert [r["generation"] for r in rows] == [f"reply to: question {i}" for i in range(30)]
    assert openai_server.stats["total_requests"] == 30  # nothing answered was paid twice
    report = (pipeline.last_summary or {})["budget"]
    assert report["earlier_runs"]["requests"] == 11
    assert report["total"]["requests"] == 30
    assert report["stopped"] is None
    assert report["by_step"]["gen (test-model)"]["requests"] == 19
    assert "price" in report["by_step"]["gen (test-model)"]


def test_spend_without_a_budget_on_ray_in_summary_and_card(
    local_ray: Any, openai_server: OpenAITestServer
) -> None:
    """No cap: each actor counts what it spent and reports it with its progress; the driver
    sums the replicas and prices the total as a local run does."""
    pipeline = _generation(
        openai_server.base_url,
        12,
        replicas=2,
        concurrency=3,
        generation_kwargs={"max_new_tokens": 4},
        price_per_million_input=3,
        price_per_million_output=15,
    )
    distiset = pipeline.run(use_cache=False, show_progress=False, executor="ray")
    stats = openai_server.stats
    summary = pipeline.last_summary or {}
    assert "budget" not in summary
    entry = summary["spend"]["gen (test-model)"]
    assert entry["requests"] == stats["total_requests"] == 12
    assert (entry["input_tokens"], entry["output_tokens"]) == (
        stats["prompt_tokens"],
        stats["completion_tokens"],
    )
    expected = (stats["prompt_tokens"] * 3 + stats["completion_tokens"] * 15) / 10**6
    assert entry["usd"] == pytest.approx(expected)
    assert f"| gen (test-model) | 12 | {stats['prompt_tokens']} |" in distiset.dataset_card()


def test_a_budget_on_ray_survives_a_driver_sigkill(
    openai_server_factory: Callable[..., OpenAITestServer],
    ray_env: dict[str, str],
    ray_kill: Callable[[], None],
    tmp_path: Path,
) -> None:
    server = openai_server_factory(latency_s=3.0)
    out = tmp_path / "out.json"
    args = ["--n", "40", "--replicas", "2", "--max-concurrency", "2", "--budget", "17"]
    proc = _start(ray_env, out, server.base_url, *args)
    # 4 requests in flight (2 per replica, the most allowed), held by the server: every
    # claim made so far was sent
    wait_for(lambda: server.stats["in_flight"] >= 4, 120, "4 requests in flight")
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    ray_kill()
    sent_by_killed_run = server.stats["total_requests"]
    assert 4 <= sent_by_killed_run <= 6  # each replica's first request goes alone
    assert not out.exists()
    server.update(latency_s=0.0)

    rerun = _start(ray_env, out, server.base_url, *args)
    assert rerun.wait(timeout=300) == 0
    report = json.loads(out.read_text())
    # what the killed run sent (its claims were journaled before they left) counts
    assert server.stats["total_requests"] == 17
    assert report["budget"]["earlier_runs"]["requests"] == sent_by_killed_run
    assert report["budget"]["total"]["requests"] == 17
    assert len(report["rows"]) <= 13


def test_two_replicas_pace_at_one_limit_against_a_strict_window(
    local_ray: Any, openai_server_factory: Callable[..., OpenAITestServer]
) -> None:
    """40 requests/s in any 1 s window, two replicas each told the limit: together they
    send at the one shared pace, and the send times the ledger hands out keep every 1 s
    window under the limit (no 429s), whatever the actor calls' round trips."""
    per_second, n = 40, 240
    server = openai_server_factory(rpm_limit=per_second, rate_window_s=1.0)
    pipeline = _generation(
        server.base_url, n, replicas=2, concurrency=16, batch=10, rpm=per_second * 60
    )
    rows = pipeline.run(use_cache=False, show_progress=False, executor="ray")
    assert sum(1 for g in rows["default"]["train"]["generation"] if g) == n
    stats = server.stats
    # two replicas pacing apart would send at twice the limit: half their requests 429. A
    # busy machine (the server shares the test's process) may delay a few arrivals.
    assert stats["statuses"].get(429, 0) <= 0.03 * n
    arrivals = sorted(stats["arrivals"])
    # the pace is the limit's, not half of it nor twice: the busiest 2 s hold close to 2 s of
    # the limit, and the run as a whole never goes faster than the limit. (Not a floor on
    # the whole run's rate: a worker whose event loop wakes late books a later instant, so
    # under CPU contention slots go unused, 31/s once when CI ran this beside other tests;
    # scripts/check.sh now runs the Ray tests on their own after the rest.)
    busiest = max(
        sum(1 for t in arrivals[i:] if t < start + 2.0) for i, start in enumerate(arrivals)
    )
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert busiest >= 0.85 * 2 * per_second, (busiest, rate)
    assert rate <= 1.02 * per_second


def test_progress_from_actors_moves_before_a_long_batch_returns(
    local_ray: Any,
    openai_server_factory: Callable[..., OpenAITestServer],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # one batch of 12 rows, 2 requests at a time, 0.3 s each: ~1.8 s before it returns
    server = openai_server_factory(latency_s=0.3)
    monkeypatch.setenv("ALAMBIC_PROGRESS_INTERVAL", "0.1")
    pipeline = _generation(server.base_url, 12, replicas=1, concurrency=2, batch=12)
    pipeline.run(use_cache=False, show_progress=None, executor="ray")
    lines = capfd.readouterr().err.splitlines()
    seen = [
        (int(m.group(1)), int(m.group(2)))
        for line in lines
        if (m := re.search(r"gen: (\d+) rows \(\d+/s\), (\d+) computed", line))
    ]
    # while the batch was still with the actor (0 rows out), its finished rows showed
    during = [computed for rows_out, computed in seen if rows_out == 0]
    assert any(2 <= computed < 12 for computed in during), seen
    assert seen[-1] == (12, 12)
    summary = pipeline.last_summary or {}
    assert summary["steps"]["gen"]["rows_computed"] == 12
    assert summary["steps"]["gen"]["llm"]["requests"] == 12
