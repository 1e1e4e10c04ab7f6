"""`alambic estimate PIPELINE`: the estimate of a pipeline file, as text and as JSON."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

Run = Any

PRICED = textwrap.dedent(
    """
    from alambic.llms import OpenAILLM
    from alambic.pipeline import Pipeline
    from alambic.steps import LoadDataFromDicts
    from alambic.steps.tasks import TextGeneration

    with Pipeline(name="cli-estimate") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": f"question {i}"} for i in range(40)])
        llm = OpenAILLM(
            model="m",
            base_url="http://127.0.0.1:9/v1",
            rpm=120,
            price_per_million_input=2,
            price_per_million_output=8,
            generation_kwargs={"max_new_tokens": 50},
        )
        load >> TextGeneration(name="gen", llm=llm, num_generations=2)
    """
)


def test_estimate_prints_requests_tokens_cost_and_time(alambic: Run, workdir: Path) -> None:
    (workdir / "priced.py").write_text(PRICED)
    out = alambic("estimate", "priced.py").stdout
    assert "Estimate for pipeline 'cli-estimate'" in out
    assert "gen: time bounded by rpm=120" in out
    data = json.loads(alambic("estimate", "priced.py", "--format", "json").stdout)
    step = data["steps"][0]
    assert step["requests"] == 40  # n=2 in one request each
    assert step["output_tokens"] == 40 * 2 * 50
    assert step["seconds"] == 20.0  # 40 requests at 120 per minute
    # nothing listens on port 9: nothing was sent
    expected = (step["input_tokens"] * 2 + step["output_tokens"] * 8) / 1e6
    assert abs(step["cost"] - expected) < 1e-12
    param = alambic(
        "estimate",
        "priced.py",
        "-p",
        "gen.llm.generation_kwargs={max_new_tokens: 10}",
        "--format",
        "json",
    ).stdout
    assert json.loads(param)["steps"][0]["output_tokens"] == 40 * 2 * 10


def test_estimate_rejects_a_bad_format(alambic: Run) -> None:
    proc = alambic("estimate", "pipe.py", "--format", "xml", check=1)
    assert "error: --format 'xml' is not one of text, json." in proc.stderr


def test_run_budget_option(alambic: Run) -> None:
    from alambic.cli.run import parse_budget

    assert parse_budget(["5"]) == {"usd": 5.0}
    assert parse_budget(["requests=3", "tokens=1e6"]) == {"requests": 3, "tokens": 1_000_000}
    proc = alambic("run", "pipe.py", "--budget", "pounds=3", check=1)
    assert "'pounds' is not one of usd, tokens, requests" in proc.stderr
    proc = alambic("run", "pipe.py", "--budget", "requests=4", "--allow-failures", check=None)
    assert "Budget: budget 4 requests reached" in proc.stderr
    assert "rows: default=" in proc.stderr
