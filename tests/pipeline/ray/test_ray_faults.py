"""Faults on Ray, as faults: a worker node of a real two-node loopback cluster removed mid-run,
the driver SIGKILLed mid-run and the run finished by a local rerun, and one rate budget for
every replica against a server that rejects anything over its limit."""

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

from alambic.testing.openai_server import OpenAITestServer
from alambic.testing.processes import wait_for

pytest.importorskip("ray", reason='the Ray executor needs Ray: pip install "alambic[ray]"')

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.xdist_group("ray")]

SCRIPT = Path(__file__).with_name("ray_script.py")
SRC = Path(__file__).resolve().parents[3] / "src"


def _start(env: dict[str, str], out: Path, url: str, *extra: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(SCRIPT), "--url", url, "--out", str(out), *extra]
    return subprocess.Popen(command, env=env, start_new_session=True)


def _check_rows(report: dict[str, Any], n: int) -> None:
    rows = report["rows"]
    assert [r["instruction"] for r in rows] == [f"question {i}" for i in range(n)]
    assert all(isinstance(r["generation"], str) and r["generation"] for r in rows)


def _rerun_locally(
    env: dict[str, str], out: Path, server: OpenAITestServer, args: list[str], n: int
) -> dict[str, Any]:
    """Finish the interrupted run with the local executor (same store): every row exactly
    once, and every request answered once at least. Returns the server's counts."""
    rerun = _start(env, out, server.base_url, *args, "--executor", "local")
    assert rerun.wait(timeout=300) == 0
    _check_rows(json.loads(out.read_text()), n)
    stats = server.stats
    assert stats["unique_requests"] == n
    return stats


def test_losing_a_worker_node_mid_run_loses_and_duplicates_nothing(
    openai_server_factory: Callable[..., OpenAITestServer],
    ray_env: dict[str, str],
    tmp_path: Path,
) -> None:
    server = openai_server_factory(latency_s=0.05)
    n, concurrency = 300, 4
    out = tmp_path / "out.json"
    proc = _start(
        ray_env, out, server.base_url,
        "--n", str(n), "--cluster", "--kill-node-at", "100",
        "--replicas", "2", "--max-concurrency", str(concurrency),
    )  # fmt: skip
    assert proc.wait(timeout=480) == 0
    report = json.loads(out.read_text())
    assert report["killed"] is True
    # one of the two replicas was on the node that was lost
    assert report["killed_node"] in report["actor_nodes"]
    assert len(report["actor_nodes"]) == 2
    _check_rows(report, n)
    stats = server.stats
    repeats = stats["total_requests"] - stats["unique_requests"]
    assert stats["unique_requests"] == n
    # only what the lost actor had in flight (its answers not yet stored) is asked again
    assert repeats <= concurrency


def test_ctrl_c_under_a_slow_rate_limit_stops_at_once_not_at_the_limits_pace(
    openai_server_factory: Callable[..., OpenAITestServer],
    ray_env: dict[str, str],
    ray_kill: Callable[[], None],
    tmp_path: Path,
) -> None:
    """120 requests a minute shared by 2 replicas holding 80 rows each: without the halt the
    actors would send their rows at 2/s for over a minute after Ctrl-C. The driver's first
    Ctrl-C halts every actor's budget: waiting rows are refused before they book a send time
    (their units are left for the next run), the run ends within seconds, and a rerun is
    exact, with nothing asked twice."""
    server = openai_server_factory()
    n = 200
    out = tmp_path / "out.json"
    args = ["--n", str(n), "--replicas", "2", "--max-concurrency", "4"]
    proc = _start(ray_env, out, server.base_url, *args, "--rpm", "120")
    wait_for(lambda: server.stats["total_requests"] >= 4, 300, "4 requests")
    proc.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    proc.wait(timeout=120)
    took = time.monotonic() - stopped
    ray_kill()
    sent = server.stats["total_requests"]
    # draining the 160 rows at the actors at 2/s would take 80 s and 160 requests; a stop
    # leaves at most the requests already booked (8 slots) and Ray's teardown
    assert took < 40, took
    assert sent < 40, sent
    stats = _rerun_locally(ray_env, out, server, args, n)
    assert stats["total_requests"] - stats["unique_requests"] == 0


def test_sigkill_of_the_driver_then_a_local_rerun_is_exact(
    openai_server_factory: Callable[..., OpenAITestServer],
    ray_env: dict[str, str],
    ray_kill: Callable[[], None],
    tmp_path: Path,
) -> None:
    server = openai_server_factory(latency_s=0.05)
    n, replicas, concurrency = 400, 2, 4
    out = tmp_path / "out.json"
    args = ["--n", str(n), "--replicas", str(replicas), "--max-concurrency", str(concurrency)]
    proc = _start(ray_env, out, server.base_url, *args)
    wait_for(lambda: server.stats["total_requests"] >= 150, 300, "150 requests")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    ray_kill()  # the actors die with their cluster
    wait_for(lambda: server.stats["in_flight"] == 0, 30, "the server to settle")
    assert not out.exists()
    before = server.stats["total_requests"]
    assert before < n

    stats = _rerun_locally(ray_env, out, server, args, n)
    # repeats: at most what both actors had in flight when the driver died
    assert stats["total_requests"] - stats["unique_requests"] <= replicas * concurrency


def test_replicas_on_ray_share_one_rate_budget(
    openai_server_factory: Callable[..., OpenAITestServer],
    ray_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Two replicas, each configured with the provider's limit, together stay under it."""
    limit_per_second, window = 10, 3.0
    server = openai_server_factory(rpm_limit=int(limit_per_second * window), rate_window_s=window)
    n = 60
    out = tmp_path / "out.json"
    script = tmp_path / "budget.py"
    script.write_text(
        BUDGET_SCRIPT.format(url=server.base_url, n=n, rpm=limit_per_second * 60, out=str(out))
    )
    proc = subprocess.Popen([sys.executable, str(script)], env=ray_env, start_new_session=True)
    assert proc.wait(timeout=300) == 0
    report = json.loads(out.read_text())
    assert report["generated"] == n
    stats = server.stats
    # paced at 99% of the limit, jitter may put one request over a strict window; two
    # replicas pacing apart would send at twice the limit and be rejected by the dozen
    assert stats["statuses"].get(429, 0) <= 2
    arrivals = sorted(stats["arrivals"])
    # the two replicas together sent at the one shared pace (99% of 10/s), not twice it
    span = arrivals[-1] - arrivals[0]
    assert span >= (n - 2) / limit_per_second
    busiest = max(sum(1 for t in arrivals if start <= t < start + window) for start in arrivals)
    assert busiest <= limit_per_second * window + 2


BUDGET_SCRIPT = """
import json, os
import ray
from alambic.llms.openai import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.base import StepResources
from alambic.steps.tasks.text_generation import TextGeneration

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
with Pipeline(name="ray-budget") as p:
    load = LoadDataFromDicts(name="load", data=[{{"instruction": f"q{{i}}"}} for i in range({n})])
    llm = OpenAILLM(model="test-model", base_url="{url}", api_key="x", rpm={rpm})
    gen = TextGeneration(
        name="gen", llm=llm, input_batch_size=5, resources=StepResources(replicas=2, cpus=1)
    )
    load >> gen
rows = p.run(use_cache=False, show_progress=False, executor="ray")["default"]["train"]
generated = sum(1 for g in rows["generation"] if g)
with open("{out}", "w") as f:
    json.dump({{"generated": generated}}, f)
ray.shutdown()
"""


def test_ctrl_c_on_the_driver_stops_sending_and_the_rerun_is_exact(
    openai_server_factory: Callable[..., OpenAITestServer],
    ray_env: dict[str, str],
    ray_kill: Callable[[], None],
    tmp_path: Path,
) -> None:
    server = openai_server_factory(latency_s=0.05)
    n, replicas, concurrency = 600, 2, 4
    out = tmp_path / "out.json"
    args = ["--n", str(n), "--replicas", str(replicas), "--max-concurrency", str(concurrency)]
    proc = _start(ray_env, out, server.base_url, *args)
    wait_for(lambda: server.stats["total_requests"] >= 100, 300, "100 requests")
    proc.send_signal(signal.SIGINT)  # the driver only, as a terminal's Ctrl-C would reach it
    proc.wait(timeout=120)
    ray_kill()
    stopped_at = server.stats["total_requests"]
    # units already with the actors finish; nothing new is sent: well short of the whole run
    assert stopped_at < n
    time.sleep(0.5)
    assert server.stats["total_requests"] == stopped_at

    stats = _rerun_locally(ray_env, out, server, args, n)
    # a graceful stop stores every answer it received: nothing is asked twice
    assert stats["total_requests"] - stats["unique_requests"] == 0
