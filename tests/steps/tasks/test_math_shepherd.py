"""Math-Shepherd: parsing solutions, labelling steps by completions, and FormatPRM."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.llms.typing import ChatType
from alambic.steps.tasks import FormatPRM, MathShepherdCompleter, MathShepherdGenerator
from alambic.steps.tasks._math_answers import same_answer, split_steps
from alambic.steps.tasks._parsing import ReplyParseError

GOLDEN = "Step 1: 3 apples plus 4 apples is 7.\nStep 2: Doubling gives 14.\nThe answer is: 14"


def test_prompt_has_rules_examples_and_problem() -> None:
    messages = MathShepherdGenerator(name="g", llm=FakeLLM(), extra_rules="Be terse.").format_input(
        {"instruction": "What is 2+2?"}
    )
    system, user = messages[0]["content"], messages[1]["content"]
    assert "Step N:" in system
    assert "The answer is:" in system
    assert "Be terse." in system
    assert "The answer is: 13" in system
    assert user == "Problem: What is 2+2?"
    many = MathShepherdGenerator(name="g", llm=FakeLLM(), M=3).format_input({"instruction": "x"})
    assert "3 times" in many[1]["content"]


@pytest.mark.parametrize(
    "reply",
    [
        GOLDEN,
        "Sure, let's solve it.\n\n**Step 1:** 3 apples plus 4 apples\nis 7.\nStep 2: Doubling gives 14.\n"
        "The final answer is: $14$.",
    ],
)
def test_golden_solution_from_well_formed_and_prosy_replies(reply: str) -> None:
    out = MathShepherdGenerator(name="g", llm=FakeLLM()).format_output(reply)
    steps = out["golden_solution"]
    assert steps[-1] == "The answer is: 14"
    assert len(steps) == 3
    assert steps[0].endswith("is 7.")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("Step 1: 3 apples plus 4 apples is 7.\nStep 2: Doubling", "no 'The answer is:'"),
        ("The answer is: 14", "no 'Step N:'"),
        ("!!!???", "no 'The answer is:'"),
    ],
)
def test_truncated_and_garbage_solutions_fail(reply: str, reason: str) -> None:
    with pytest.raises(ReplyParseError, match=reason):
        MathShepherdGenerator(name="g", llm=FakeLLM()).parse_output(reply)


def test_m_solutions_split_on_separators_or_answer_lines() -> None:
    task = MathShepherdGenerator(name="g", llm=FakeLLM(), M=2)
    two = "Step 1: a\nThe answer is: 1\n---\nStep 1: b\nThe answer is: 2"
    assert task.format_output(two) == {
        "solutions": [["Step 1: a", "The answer is: 1"], ["Step 1: b", "The answer is: 2"]]
    }
    bare = "Step 1: a\nThe answer is: 1\nStep 1: b\nThe answer is: 2\nStep 1: c"
    assert len(task.format_output(bare)["solutions"]) == 2
    with pytest.raises(ReplyParseError, match="asked for 2 solutions, 1"):
        task.parse_output("Step 1: a\nThe answer is: 1\n---\nStep 1: trunc")


def test_answers_compare_as_numbers() -> None:
    assert same_answer("1,000", "1000")
    assert same_answer("0.5", "1/2")
    assert not same_answer("14", "15")
    assert same_answer("x + 1", "X  + 1")
    assert split_steps("Step 1: a\nThe answer is: \\boxed{42}")[-1] == "The answer is: 42"


def completer_reply(messages: ChatType, index: int) -> str:
    """Continuations reach 14 only when the solution so far has not gone wrong ('8')."""
    prompt = messages[-1]["content"]
    if "is 8" in prompt:
        return "Step 3: Doubling gives 16.\nThe answer is: 16"
    if index == 0:
        return "Step 9: something else.\nThe answer is: 13"
    return "Step 2: Doubling gives 14.\nThe answer is: 14"


def two_solutions_row() -> dict[str, Any]:
    """The apples problem with one right and one wrong solution, for the completer."""
    return {
        "instruction": "3 apples plus 4 apples, doubled?",
        "golden_solution": split_steps(GOLDEN),
        "solutions": [
            ["Step 1: 3 plus 4 is 7.", "Step 2: Doubling gives 14.", "The answer is: 14"],
            ["Step 1: 3 plus 4 is 8.", "Step 2: Doubling gives 16.", "The answer is: 16"],
        ],
    }


def test_completer_labels_steps_by_their_completions(run_task: Callable[..., Any]) -> None:
    llm = FakeLLM(reply_fn=completer_reply)
    task = MathShepherdCompleter(name="complete", llm=llm, N=2)
    row = two_solutions_row()
    out = run_task(task, [row])[0]
    assert out["solutions"] == [
        ["Step 1: 3 plus 4 is 7. +", "Step 2: Doubling gives 14. +"],
        ["Step 1: 3 plus 4 is 8. -", "Step 2: Doubling gives 16. -"],
    ]
    # one request per step before the last, with N generations each
    assert [h["num_generations"] for h in llm.history] == [2, 2]
    assert "Step 1: 3 plus 4 is 7." in llm.history[0]["messages"][-1]["content"]
    assert out["alambic_metadata"]["statistics_complete"]["output_tokens"] > 0


def test_completer_metadata_has_distilabels_raw_keys(run_task: Callable[..., Any]) -> None:
    row = two_solutions_row()
    llm = FakeLLM(reply_fn=completer_reply)
    out = run_task(MathShepherdCompleter(name="complete", llm=llm, N=2), [row])[0]
    meta = out["alambic_metadata"]
    # two requests (one step before the answer line in each solution), N=2 texts each
    assert meta["raw_output_complete"] == [
        completer_reply(h["messages"], i) for h in llm.history for i in range(2)
    ]
    assert meta["raw_output_complete"][2:] == ["Step 3: Doubling gives 16.\nThe answer is: 16"] * 2
    assert meta["raw_input_complete"] == [h["messages"] for h in llm.history]
    assert "Step 1: 3 plus 4 is 8." in meta["raw_input_complete"][1][-1]["content"]
    quiet = MathShepherdCompleter(
        name="complete",
        llm=FakeLLM(reply_fn=completer_reply),
        N=1,
        add_raw_output=False,
        add_raw_input=False,
    )
    meta = run_task(quiet, [row])[0]["alambic_metadata"]
    assert sorted(meta) == ["statistics_complete"]


def test_completer_failed_rows_keep_the_reason(run_task: Callable[..., Any]) -> None:
    task = MathShepherdCompleter(name="complete", llm=FakeLLM(fail_on=["Problem: BAD"]), N=1)
    rows = run_task(
        task,
        [
            {
                "instruction": "BAD",
                "golden_solution": split_steps(GOLDEN),
                "solutions": [["Step 1: a", "Step 2: b", "The answer is: 1"]],
            },
            {"instruction": "x", "golden_solution": ["no answer"], "solutions": [["Step 1: a"]]},
            {"instruction": "x", "golden_solution": None, "solutions": None},
        ],
    )
    assert [r["solutions"] for r in rows] == [None, None, None]
    assert "FakeLLM was told to fail" in rows[0]["alambic_metadata"]["error_complete"]["message"]
    assert "no answer line" in rows[1]["alambic_metadata"]["error_complete"]["message"]
    assert "upstream" in rows[2]["alambic_metadata"]["error_complete"]["message"]
    with pytest.raises(ColumnTypeError, match="'solutions' must be a list of solutions"):
        run_task(
            task,
            [{"instruction": "x", "golden_solution": ["The answer is: 1"], "solutions": "oops"}],
        )


LABELLED = {
    "instruction": "Q?",
    "solutions": [["Step 1: a +", "Step 2: b -"], ["Step 1: c +"]],
}


def test_format_prm_math_shepherd_layout() -> None:
    rows = next(FormatPRM(name="prm").process([LABELLED, {"instruction": "x", "solutions": None}]))
    assert rows == [
        {
            "instruction": "Q?",
            "input": "Q? Step 1: a ки\nStep 2: b ки",
            "label": "Q? Step 1: a +\nStep 2: b -",
        },
        {"instruction": "Q?", "input": "Q? Step 1: c ки", "label": "Q? Step 1: c +"},
    ]


def test_format_prm_trl_layout_and_single_solution_rows() -> None:
    step = FormatPRM(name="prm", format="trl")
    assert step.outputs == ["prompt", "completions", "labels"]
    rows = next(step.process([{"instruction": "Q?", "solutions": ["Step 1: a +", "Step 2: b -"]}]))
    assert rows == [
        {
            "instruction": "Q?",
            "prompt": "Q?",
            "completions": ["Step 1: a", "Step 2: b"],
            "labels": [True, False],
        }
    ]
    with pytest.raises(ColumnTypeError, match="does not end with one of the tags"):
        next(step.process([{"instruction": "Q", "solutions": ["Step 1: untagged"]}]))
