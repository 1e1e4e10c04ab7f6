"""``run(budget=...)`` against the OpenAI test server: the cap is exact, survives a SIGKILL,
and what is shown spent is what the server counted, priced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from tests.pipeline.priced_pipeline import priced_pipeline

from alambic.budget import Budget
from alambic.testing.openai_server import OpenAITestServer

SCRIPT = Path(__file__).with_name("budget_script.py")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_request_budget_sends_exactly_k_then_a_higher_one_finishes(
    openai_server: OpenAITestServer,
) -> None:
    pipeline = priced_pipeline(openai_server.base_url, 30)
    pipeline.run(show_progress=False, budget=Budget(requests=11))
    report = (pipeline.last_summary or {})["budget"]
    assert openai_server.stats["total_requests"] == 11
    assert report["total"]["requests"] == 11
    assert report["remaining"] == {"requests": 0}
    assert "11 requests reached" in report["stopped"]

    distiset = pipeline.run(show_progress=False, budget=Budget(requests=40))
    rows = distiset["default"]["train"].to_list()
    assert [r["generation"] for r in rows] == [f"reply to: question {i}" for i in range(30)]
    assert openai_server.stats["total_requests"] == 30  # nothing answered was paid twice
    report = (pipeline.last_summary or {})["budget"]
    assert report["earlier_runs"]["requests"] == 11
    assert report["total"]["requests"] == 30
    assert report["stopped"] is None


def test_cost_shown_is_the_servers_usage_times_the_prices(
    openai_server: OpenAITestServer,
) -> None:
    pipeline = priced_pipeline(openai_server.base_url, 12)
    pipeline.run(show_progress=False, budget=1.0)
    stats = openai_server.stats
    report = (pipeline.last_summary or {})["budget"]
    expected = (Decimal(stats["prompt_tokens"]) * 3 + Decimal(stats["completion_tokens"]) * 15) / (
        10**6
    )
    assert Decimal(str(report["this_run"]["usd"])) == expected
    assert report["this_run"]["input_tokens"] == stats["prompt_tokens"]
    assert report["this_run"]["output_tokens"] == stats["completion_tokens"]
    assert report["by_step"]["gen (test-model)"]["requests"] == 12


def test_usd_budget_stops_before_the_request_that_could_pass_it(
    openai_server: OpenAITestServer,
) -> None:
    pipeline = priced_pipeline(openai_server.base_url, 40)
    # a request's worst case: its prompt's bytes (< 60 with framing) at $3/M, 4 tokens at $15/M
    worst = (Decimal(60) * 3 + Decimal(4) * 15) / 10**6
    cap = worst * 10
    pipeline.run(show_progress=False, budget=float(cap))
    stats = openai_server.stats
    report = (pipeline.last_summary or {})["budget"]
    spent = Decimal(str(report["total"]["usd"]))
    assert (
        spent
        == (Decimal(stats["prompt_tokens"]) * 3 + Decimal(stats["completion_tokens"]) * 15) / 10**6
    )
    assert spent <= cap
    # stopped because the next request, with the 3 in flight, could pass the cap
    assert cap - spent < 4 * worst
    assert report["stopped"] is not None
    assert stats["total_requests"] < 40


@pytest.mark.slow
def test_budget_survives_sigkill_then_rerun_exactly_k(
    openai_server_factory: Callable[..., OpenAITestServer], tmp_path: Path
) -> None:
    server = openai_server_factory(latency_s=3.0)
    out, cache = tmp_path / "out.json", tmp_path / "cache"
    env = dict(os.environ, ALAMBIC_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, str(SCRIPT), server.base_url, "40", "17", str(out)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # 4 requests in flight (the most allowed), held by the server: every reservation made
    # so far was sent (the first request, sent alone, may have been answered)
    while server.stats["in_flight"] < 4:
        assert proc.poll() is None, proc.stderr.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sent_by_killed_run = server.stats["total_requests"]
    assert sent_by_killed_run in (4, 5)
    server.update(latency_s=0.0)
    rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(out.read_text())
    assert server.stats["total_requests"] == 17  # what the killed run sent counts
    assert result["budget"]["earlier_runs"]["requests"] == sent_by_killed_run
    assert result["budget"]["total"]["requests"] == 17
    assert len(result["rows"]) <= 13


def test_spend_without_a_budget_in_summary_and_card(openai_server: OpenAITestServer) -> None:
    pipeline = priced_pipeline(openai_server.base_url, 9)
    distiset = pipeline.run(show_progress=False)
    stats = openai_server.stats
    summary = pipeline.last_summary or {}
    assert "budget" not in summary
    entry = summary["spend"]["gen (test-model)"]
    assert entry["requests"] == 9
    assert (entry["input_tokens"], entry["output_tokens"]) == (
        stats["prompt_tokens"],
        stats["completion_tokens"],
    )
    expected = (stats["prompt_tokens"] * 3 + stats["completion_tokens"] * 15) / 10**6
    assert entry["usd"] == pytest.approx(expected)
    assert "price_per_million_input/output on OpenAILLM" in entry["price"]
    card = distiset.dataset_card()
    assert "## Cost of the run that made it" in card
    assert f"| gen (test-model) | 9 | {stats['prompt_tokens']} |" in card
    assert f"{expected:.4f}" in card
