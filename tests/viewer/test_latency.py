"""Per-request latency: recorded in each row's metadata by API clients, shown in the lineage
and as a histogram in the viewer (through a real HTTP client and in headless Chromium)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.viewer.conftest import chromium_path

from alambic.llms import OpenAILLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGeneration
from alambic.testing.openai_server import OpenAITestServer

LATENCY_S = 0.05  # the server waits this long (plus up to JITTER_S) before each reply
JITTER_S = 0.05


def _run(url: str, rows: int = 24, use_cache: bool = True, **settings: Any) -> Any:
    with Pipeline(name="latency-demo") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(rows)])
        # one request at a time
        llm = OpenAILLM(model="test-model", base_url=url, **({"max_concurrency": 1} | settings))
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=8)
    return pipeline.run(show_progress=False, use_cache=use_cache)


@pytest.fixture
def served_latency(openai_server_factory: Any) -> Iterator[str]:
    from alambic.pipeline.runs import list_runs
    from alambic.viewer import open_target, running

    server: OpenAITestServer = openai_server_factory(latency_s=LATENCY_S, jitter_s=JITTER_S)
    _run(server.base_url)
    (run,) = [r for r in list_runs() if r.pipeline_name == "latency-demo"]
    with running(open_target(run.ref), {}) as url:
        yield url


def test_each_row_keeps_its_requests_latency(openai_server_factory: Any) -> None:
    server: OpenAITestServer = openai_server_factory(latency_s=LATENCY_S, jitter_s=JITTER_S)
    rows = _run(server.base_url)["default"]["train"].to_list()
    latencies = [row["alambic_metadata"]["latency_gen"] for row in rows]
    assert len(latencies) == 24
    # the server's wait, plus what the client and the loop take (the first request also
    # opens the connection); never the time a request queued for the one slot: 24 requests
    # in a row, so with queueing the median would be about 12 server waits (0.9 s)
    assert all(s >= LATENCY_S for s in latencies), latencies
    assert statistics.median(latencies) < LATENCY_S + JITTER_S + 0.25, latencies
    assert len(set(latencies)) > 1


def test_a_row_rebuilt_from_the_request_cache_is_the_row_first_made(
    openai_server_factory: Any,
) -> None:
    server: OpenAITestServer = openai_server_factory(latency_s=0.01, status_sequence=[500])
    first = _run(server.base_url, rows=6)["default"]["train"].to_list()
    sent = server.stats["total_requests"]
    # the run store's rows recomputed, every answer from the request cache: no request
    again = _run(server.base_url, rows=6, use_cache=False)["default"]["train"].to_list()
    assert server.stats["total_requests"] == sent
    assert again == first  # latency and retries (one 500, retried) included
    assert sorted(row["alambic_metadata"]["retries_gen"] or 0 for row in first) == [0] * 5 + [1]


def test_retries_are_kept_on_the_row_failed_or_not(openai_server_factory: Any) -> None:
    server: OpenAITestServer = openai_server_factory(status_sequence=[500] * 4)
    rows = _run(server.base_url, rows=3, max_concurrency=1, max_retries=2)
    rows = rows["default"]["train"].to_list()
    metas = [row["alambic_metadata"] for row in rows]
    # one request fails 3 times (2 retries) and gives up; the next fails once, then answers
    # (the dataset's metadata struct has every key; rows without one hold None)
    assert sorted(m["retries_gen"] or 0 for m in metas) == [0, 1, 2]
    (failed,) = [m for m in metas if m["error_gen"]]
    assert failed["retries_gen"] == 2
    assert "gave up after 3 attempts" in failed["error_gen"]["message"]
    (retried,) = [m for m in metas if m["retries_gen"] == 1]
    assert retried["error_gen"] is None
    assert retried["latency_gen"] > 0
    assert server.stats["total_requests"] == 3 + 2 + 1


def test_latency_histogram_and_lineage_over_http(served_latency: str) -> None:
    with httpx.Client(base_url=served_latency, timeout=60) as client:
        plots = client.get("/api/plots", params={"step": "gen"}).json()["plots"]
        latency = [p for p in plots if p["title"] == "latency s (gen)"]
        assert len(latency) == 1
        svg = latency[0]["svg"]
        assert svg.lstrip().startswith("<?xml")
        assert "n=24" in svg  # every request counted once
        assert "seconds from sending a request to its reply" in svg
        lineage = client.get("/api/row", params={"step": "gen", "index": 3}).json()
        call = next(c for c in lineage["calls"] if c["name"] == "gen")
        assert call["latency"] >= LATENCY_S


@pytest.mark.slow
def test_latency_histogram_in_chromium(served_latency: str) -> None:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(served_latency)
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.locator("#rows tbody tr").first.click()
        page.wait_for_selector("#lineage")
        page.wait_for_function(
            "document.querySelector('#lineage').textContent.includes('latency:')"
        )
        page.click("#tab-plots")
        page.wait_for_selector("#plots svg", timeout=60_000)
        histogram = page.locator('#plots .plot[title="latency s (gen)"] svg')
        assert histogram.count() == 1
        assert histogram.bounding_box()["height"] > 100  # type: ignore[index]
        browser.close()
