"""Cost and tokens per step and per model in the live progress, `runs list` and `runs show`,
run as subprocesses against the OpenAI test server: the figures are the server's usage times
the prices; an unknown price reads ``unknown``, never 0."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

from alambic.budget import format_usd
from alambic.testing.openai_server import OpenAITestServer

Run = Any

PRICED = textwrap.dedent(
    """
    import os
    from alambic.llms import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration

    with Pipeline(name="cost-demo") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i} " * (1 + i % 3)}
                                       for i in range(12)])
        llm = OpenAILLM(model="test-model", base_url=os.environ["SERVER_URL"], max_concurrency=3,
                        generation_kwargs={"max_new_tokens": 4}, PRICES)
        load >> TextGeneration(name="gen", llm=llm, input_batch_size=4)
    """
)


def _write(workdir: Path, name: str, prices: str) -> None:
    (workdir / name).write_text(PRICED.replace("PRICES", prices))


def _expected(stats: dict[str, Any]) -> Decimal:
    return (Decimal(stats["prompt_tokens"]) * 3 + Decimal(stats["completion_tokens"]) * 15) / (
        10**6
    )


def test_progress_runs_list_and_show_are_the_servers_usage_times_the_prices(
    alambic: Run, workdir: Path, openai_server_factory: Any
) -> None:
    server: OpenAITestServer = openai_server_factory(latency_s=0.03, cached_prompt_tokens=2)
    _write(workdir, "priced.py", "price_per_million_input=3, price_per_million_output=15")
    proc = alambic("run", "priced.py", SERVER_URL=server.base_url, ALAMBIC_PROGRESS_INTERVAL="0.02")
    stats = server.stats
    assert stats["total_requests"] == 12
    usd = format_usd(_expected(stats))
    tokens = f"{stats['prompt_tokens']}/{stats['completion_tokens']}/{stats['cached_tokens']}"
    assert stats["cached_tokens"] == 24  # 2 of every prompt's tokens, as the server said

    progress = [line for line in proc.stderr.splitlines() if line.startswith("[cost-demo] ")]
    live = [line for line in progress if "run summary" not in line]
    # while the run goes, the lines carry the spending so far; the last one all of it
    assert any("model test-model: " in line and usd not in line for line in live[:-1])
    assert "gen: 12 rows (" in live[-1]
    assert f"tokens {tokens}, {usd}" in live[-1]
    assert f"model test-model: 12 requests, tokens {tokens}, {usd}" in live[-1]
    summary = proc.stderr[proc.stderr.index("run summary") :]
    assert f"model test-model: 12 requests, {tokens} tokens in/out/cached, cost {usd}" in summary
    assert f"total cost: {usd}" in summary

    listing = alambic("runs", "list").stdout.splitlines()
    header, row = listing[0].split("\t"), listing[1].split("\t")
    assert header[-1] == "cost"
    assert row[-1] == usd

    shown = alambic("runs", "show", "cost-demo").stdout
    assert f"cost:        {usd}" in shown
    assert f"  test-model\t12\t{tokens.replace('/', ' / ')}\t{usd}" in shown
    data = json.loads(alambic("runs", "show", "cost-demo", "--json").stdout)
    (entry,) = data["run"]["spend"]
    assert entry["step"] == "gen"
    assert entry["model"] == "test-model"
    assert entry["requests"] == 12
    assert entry["input_tokens"] == stats["prompt_tokens"]
    assert entry["output_tokens"] == stats["completion_tokens"]
    assert entry["cached_tokens"] == stats["cached_tokens"]
    assert Decimal(str(entry["usd"])) == _expected(stats)

    # a second run answers everything from the store: it spends nothing, and says so
    alambic("run", "priced.py", SERVER_URL=server.base_url)
    assert server.stats["total_requests"] == 12
    second = alambic("runs", "list").stdout.splitlines()[2].split("\t")
    assert second[-1] == "$0"


def test_the_live_table_on_a_terminal_has_cost_per_step_and_per_model(
    alambic: Run, workdir: Path, openai_server_factory: Any
) -> None:
    server: OpenAITestServer = openai_server_factory()
    _write(workdir, "priced.py", "price_per_million_input=3, price_per_million_output=15")
    proc = alambic("run", "priced.py", "--progress", SERVER_URL=server.base_url)
    usd = format_usd(_expected(server.stats))
    # rich's live table, drawn on stderr (stdout is the script's): its final state stays
    table = proc.stderr
    assert "tokens in/out/cached" not in proc.stdout
    assert "tokens in/out/cached" in table
    assert "cost" in table
    gen = [line for line in table.splitlines() if "│ gen" in line]
    model = [line for line in table.splitlines() if "model test-model" in line]
    assert usd in gen[-1]
    assert usd in model[-1]


def test_an_unknown_price_is_unknown_everywhere_never_zero(
    alambic: Run, workdir: Path, openai_server_factory: Any
) -> None:
    server: OpenAITestServer = openai_server_factory()
    _write(workdir, "unpriced.py", "max_retries=0")  # a local server: no table price applies
    proc = alambic("run", "unpriced.py", SERVER_URL=server.base_url)
    assert "model test-model: 12 requests" in proc.stderr
    assert "cost unknown" in proc.stderr
    assert "total cost: unknown" in proc.stderr
    assert "$0" not in proc.stderr
    row = alambic("runs", "list").stdout.splitlines()[1].split("\t")
    assert row[-1] == "unknown"
    shown = alambic("runs", "show", "cost-demo").stdout
    assert "cost:        unknown" in shown
    assert "unknown price: OpenAILLM points at http://127.0.0.1" in shown
    assert "$0" not in shown
