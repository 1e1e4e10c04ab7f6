"""Every judge inside a real pipeline: with the fake LLM (parsed and failed rows), and with
the tiny local models (real generation and scoring, gibberish replies become failed rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alambic.llms.fake import FakeLLM
from alambic.llms.typing import ChatType
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import (
    ComplexityScorer,
    PairwiseJudge,
    PrometheusEval,
    QualityScorer,
    RewardModelScore,
    UltraFeedback,
)

ROWS: list[dict[str, Any]] = [
    {
        "instruction": "Capital of France?",
        "generation": "Paris.",
        "generations": ["Paris.", "Lyon."],
        "responses": ["Paris.", "Lyon."],
        "instructions": ["Capital of France?", "Prove Fermat's last theorem."],
    },
    {
        "instruction": "FAIL this one",
        "generation": "x",
        "generations": ["x", "y"],
        "responses": ["x", "y"],
        "instructions": ["FAIL this one", "z"],
    },
]


def judge_reply(messages: ChatType, index: int) -> str:
    """Well-formed replies for each judge, recognised from its prompt."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    prompt = messages[-1]["content"]
    if "Output for Text" in prompt:
        return "#### Output for Text 1\nRating: 5\nRationale: right.\n#### Output for Text 2\nRating: 2\nRationale: wrong."
    if "[RESULT] <integer" in prompt:
        return "Feedback: accurate. [RESULT] 5"
    if "[RESULT] <A or B>" in prompt:
        return "Feedback: A is right. [RESULT] A"
    if "[[C]]" in system:
        a = prompt.split("[Assistant A's answer - start]\n")[1].split("\n")[0]
        return f"{a} wins.\n[[A]]" if a == "Paris." else f"{a} loses.\n[[B]]"
    if "[Response 1] Score:" in prompt:
        return "[Response 1] Score: 2\n[Response 2] Score: 1"
    if "Rank the following" in prompt:
        return "[1] Score: 1\n[2] Score: 3"
    raise AssertionError(f"unexpected prompt: {prompt[:200]}")


def judges(make_llm: Any, *, swap: bool = True) -> list[Any]:
    return [
        UltraFeedback(name="ultrafeedback", aspect="honesty", llm=make_llm()),
        PrometheusEval(name="prometheus_abs", rubric="factual-validity", llm=make_llm()),
        PrometheusEval(
            name="prometheus_rel", mode="relative", rubric="helpfulness", llm=make_llm()
        ),
        PairwiseJudge(name="pairwise", swap_positions=swap, llm=make_llm()),
        ComplexityScorer(name="complexity", llm=make_llm()),
        QualityScorer(name="quality", llm=make_llm()),
    ]


EXPECTED = {
    "ultrafeedback": {"ratings": [5, 2], "rationales": ["right.", "wrong."]},
    "prometheus_abs": {"feedback": "accurate.", "result": 5},
    "prometheus_rel": {"feedback": "A is right.", "result": "A"},
    "pairwise": {"winner": "A", "verdicts": ["A", "A"]},
    "complexity": {"scores": [1.0, 3.0]},
    "quality": {"scores": [2.0, 1.0]},
}


def test_judges_in_a_pipeline_with_the_fake_llm() -> None:
    def fake() -> FakeLLM:
        return FakeLLM(reply_fn=judge_reply, fail_on=["FAIL"])

    with Pipeline(name="judges-fake") as pipeline:
        LoadDataFromDicts(data=ROWS) >> judges(fake)
    distiset = pipeline.run(use_cache=False, show_progress=False)
    assert sorted(distiset) == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        good, failed = distiset[name]["train"].to_list()
        assert {k: good[k] for k in expected} == expected, name
        assert good["model_name"] == "fake-model"
        assert good["alambic_metadata"].get(f"error_{name}") is None, name
        assert all(failed[k] is None for k in expected if k != "verdicts"), name
        assert "FakeLLM was told to fail" in failed["alambic_metadata"][f"error_{name}"]["message"]


@pytest.mark.slow
def test_judges_in_a_pipeline_with_tiny_local_models(
    tiny_model_path: Path, tiny_reward_model_path: Path
) -> None:
    from alambic.llms.transformers import TransformersLLM

    def local() -> TransformersLLM:
        return TransformersLLM(model=str(tiny_model_path), generation_kwargs={"max_new_tokens": 8})

    with Pipeline(name="judges-tiny") as pipeline:
        load = LoadDataFromDicts(data=ROWS[:1])
        # swap off: pyarrow 26 cannot cast a [None, None] list<null> column to itself, which
        # utils/parquet.conform_table does (reported); two failed verdicts would hit it
        steps = judges(local, swap=False)
        reward = RewardModelScore(name="reward", model=str(tiny_reward_model_path))
        load >> [*steps, reward]
    for step in steps:  # transformers' loading is not thread-safe; the executor loads in parallel
        step.llm.load()
    distiset = pipeline.run(use_cache=False, show_progress=False)
    assert isinstance(distiset["reward"]["train"][0]["score"], float)
    for name, expected in EXPECTED.items():
        [row] = distiset[name]["train"].to_list()
        meta = row["alambic_metadata"]
        assert meta[f"statistics_{name}"]["output_tokens"] is not None, name
        # an untrained model writes gibberish: parsed values, or None with the reason
        if meta.get(f"error_{name}") is not None:
            assert meta[f"error_{name}"]["message"], name
            assert row[next(iter(expected))] is None, name
