"""Magpie's system prompts as distilabel 1.5 takes them, and its one-turn output shape.

``system_prompt`` may be a dict name -> prompt (equal chances) or name -> (prompt,
probability): each row draws one with those weights and records the name in
``system_prompt_key``. With one turn and ``include_system_prompt=True``, a row that had a
system prompt comes out as ``conversation`` (system message first), the others as
``instruction`` + ``response``, as distilabel's ``_prepare_conversation_outputs`` does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from alambic.llms.fake import FakeLLM
from alambic.llms.typing import GenerateOutput
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import Magpie, MagpieGenerator

SYSTEM = re.compile(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", re.DOTALL)
WEIGHTED: dict[str, Any] = {
    "math": ("You teach maths.", 0.7),
    "cook": ("You are a cook.", 0.2),
    "law": ("You explain law.", 0.1),
}


class EchoCompletion(FakeLLM):
    """Raw completions whose user turn names the system prompt it was steered by."""

    supports_raw_completion: ClassVar[bool] = True

    def complete(
        self, prompts: Sequence[str], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        outs: list[GenerateOutput] = []
        for prompt in prompts:
            found = SYSTEM.search(prompt)
            topic = found.group(1) if found else "nothing"
            outs.append(
                {
                    "generations": [f"Asked under: {topic}<|im_end|>"] * num_generations,
                    "statistics": {
                        "input_tokens": [1] * num_generations,
                        "output_tokens": [1] * num_generations,
                    },
                }
            )
        return outs


def generated(gen: MagpieGenerator, offset: int = 0) -> list[dict[str, Any]]:
    gen.load()
    return [row for batch, _ in gen.process(offset) for row in batch]


def test_weighted_dict_draws_follow_the_probabilities() -> None:
    gen = MagpieGenerator(
        name="gen",
        llm=EchoCompletion(),
        num_rows=3000,
        batch_size=1000,
        only_instruction=True,
        pre_query_template="chatml",
        system_prompt=WEIGHTED,
    )
    assert list(gen.get_outputs()) == ["instruction", "system_prompt_key", "model_name"]
    rows = generated(gen)
    counts = Counter(row["system_prompt_key"] for row in rows)
    # seeded draws: the same counts on every run; the bound is 5 standard deviations wide
    for name, (_, probability) in WEIGHTED.items():
        share = counts[name] / len(rows)
        assert abs(share - probability) < 5 * (probability * (1 - probability) / 3000) ** 0.5
    # each row's key names the prompt that steered it
    for row in rows:
        assert row["instruction"] == f"Asked under: {WEIGHTED[row['system_prompt_key']][0]}"
    # a rerun, and a resume from row 2500, draw the same prompts
    assert [r["system_prompt_key"] for r in generated(gen)] == [
        r["system_prompt_key"] for r in rows
    ]
    resumed = generated(gen, offset=2500)
    assert [r["system_prompt_key"] for r in resumed] == [
        r["system_prompt_key"] for r in rows[2500:]
    ]


def test_a_plain_dict_gives_each_prompt_an_equal_chance() -> None:
    gen = MagpieGenerator(
        name="gen",
        llm=EchoCompletion(),
        num_rows=10,
        system_prompt={"a": "Prompt A.", "b": "Prompt B."},
    )
    draws = Counter(gen._draw(str(i)) for i in range(4000))
    assert set(draws) == {("Prompt A.", "a"), ("Prompt B.", "b")}
    assert abs(draws["Prompt A.", "a"] - 2000) < 5 * (4000 * 0.25) ** 0.5
    # a zero probability is never drawn
    never = MagpieGenerator(
        name="gen",
        llm=EchoCompletion(),
        num_rows=10,
        system_prompt={"a": ("Prompt A.", 1.0), "b": ("Prompt B.", 0.0)},
    )
    assert {never._draw(str(i))[1] for i in range(500)} == {"a"}


@pytest.mark.parametrize(
    ("prompts", "match"),
    [
        (
            {"a": ("A", 0.5), "b": ("B", 0.4)},
            r"add up to 0\.9, not 1.*scaled: \{'a': 0\.5556, 'b': 0\.4444\}",
        ),
        ({"a": ("A", 0.5), "b": "B"}, r"\['b'\] have no probability"),
        ({"a": ("A", 1.5), "b": ("B", -0.5)}, r"system_prompt\['a'\] has probability 1\.5"),
        ({}, r"holds no prompts"),
    ],
)
def test_a_dict_that_cannot_be_drawn_from_is_refused(prompts: Any, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        MagpieGenerator(name="gen", llm=EchoCompletion(), num_rows=1, system_prompt=prompts)


def test_the_yaml_form_of_pairs_and_float_sums_are_accepted() -> None:
    # a pipeline saved to YAML or JSON stores the pairs as lists
    gen = MagpieGenerator(
        name="gen",
        llm=EchoCompletion(),
        num_rows=1,
        system_prompt={"a": ["A", 0.7], "b": ["B", 0.2], "c": ["C", 0.1]},  # sum 0.999...9
    )
    assert gen.system_prompt == {"a": ("A", 0.7), "b": ("B", 0.2), "c": ("C", 0.1)}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_a_saved_pipeline_keeps_the_weighted_prompts(fmt: str, tmp_path: Any) -> None:
    with Pipeline(name="weighted-saved") as pipeline:
        MagpieGenerator(name="gen", llm=FakeLLM(), num_rows=2, system_prompt=WEIGHTED)
    path = tmp_path / f"pipeline.{fmt}"
    pipeline.save(str(path), format=fmt)
    loaded = Pipeline.from_yaml(str(path)) if fmt == "yaml" else Pipeline.from_json(str(path))
    gen = loaded.steps["gen"]
    assert gen.system_prompt == WEIGHTED
    assert list(gen.get_outputs()) == ["instruction", "response", "system_prompt_key", "model_name"]


def test_magpie_rows_draw_their_own_and_a_row_column_wins(
    run_task: Callable[..., Any],
) -> None:
    task = Magpie(
        name="magpie",
        llm=EchoCompletion(),
        only_instruction=True,
        pre_query_template="chatml",
        system_prompt={"a": "Prompt A.", "b": "Prompt B."},
    )
    rows = run_task(task, [{} for _ in range(40)] + [{"system_prompt": "Row's own."}])
    keys = [row["system_prompt_key"] for row in rows[:40]]
    assert set(keys) == {"a", "b"}  # identical rows still draw one each
    for row in rows[:40]:
        assert row["instruction"] == f"Asked under: Prompt {row['system_prompt_key'].upper()}."
    assert rows[40]["instruction"] == "Asked under: Row's own."
    assert rows[40]["system_prompt_key"] is None  # nothing was drawn for it


def test_the_key_is_kept_on_a_failed_row(
    run_task: Callable[..., Any], error_of: Callable[..., Any]
) -> None:
    class Empty(EchoCompletion):
        def complete(
            self, prompts: Sequence[str], num_generations: int = 1, **kwargs: Any
        ) -> list[GenerateOutput]:
            outs = super().complete(prompts, num_generations)
            for out in outs:
                out["generations"] = ["<|im_end|>"] * num_generations
            return outs

    task = Magpie(
        name="magpie",
        llm=Empty(),
        pre_query_template="chatml",
        system_prompt={"only": ("The only one.", 1.0)},
    )
    (row,) = run_task(task, [{}])
    assert (row["instruction"], row["response"], row["system_prompt_key"]) == (None, None, "only")
    assert "empty user message" in error_of(row, "magpie")["message"]


# -- one turn with include_system_prompt: distilabel's per-row shape ---------------------------


def test_one_turn_with_a_system_prompt_kept_is_a_conversation() -> None:
    gen = MagpieGenerator(
        name="gen",
        llm=EchoCompletion(),
        num_rows=2,
        pre_query_template="chatml",
        system_prompt="Be brief.",
        include_system_prompt=True,
    )
    assert list(gen.get_outputs()) == ["conversation", "model_name"]
    rows = generated(gen)
    assert rows[0]["conversation"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Asked under: Be brief."},
        {"role": "assistant", "content": "fake reply to: Asked under: Be brief."},
    ]
    without = MagpieGenerator(
        name="gen",
        llm=EchoCompletion(),
        num_rows=1,
        pre_query_template="chatml",
        include_system_prompt=True,
    )
    assert list(without.get_outputs()) == ["instruction", "response", "model_name"]
    (row,) = generated(without)
    assert (row["instruction"], row["response"]) == (
        "Asked under: nothing",
        "fake reply to: Asked under: nothing",
    )


def test_one_turn_magpie_rows_take_the_shape_of_their_own_system_prompt() -> None:
    task_level = Magpie(
        name="m",
        llm=EchoCompletion(),
        pre_query_template="chatml",
        system_prompt=["A.", "B."],
        include_system_prompt=True,
    )
    assert list(task_level.get_outputs()) == ["conversation", "model_name"]
    with Pipeline(name="magpie-one-turn-system") as pipeline:
        load = LoadDataFromDicts(data=[{"system_prompt": "Be brief."}, {"system_prompt": ""}])
        magpie = Magpie(
            name="magpie",
            llm=EchoCompletion(),
            pre_query_template="chatml",
            include_system_prompt=True,
        )
        load >> magpie
    # the row's column decides: all three columns are declared, each row fills its own
    assert list(magpie.get_outputs()) == ["instruction", "response", "conversation", "model_name"]
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert [m["role"] for m in rows[0]["conversation"]] == ["system", "user", "assistant"]
    assert (rows[0]["instruction"], rows[0]["response"]) == (None, None)
    assert rows[1]["conversation"] is None
    assert rows[1]["instruction"] == "Asked under: nothing"
    assert rows[1]["response"] == "fake reply to: Asked under: nothing"


def test_a_list_with_an_empty_prompt_declares_both_shapes() -> None:
    gen = MagpieGenerator(
        name="gen",
        llm=EchoCompletion(),
        num_rows=40,
        pre_query_template="chatml",
        system_prompt=["Be brief.", ""],  # "" draws no system prompt
        include_system_prompt=True,
    )
    assert list(gen.get_outputs()) == ["instruction", "response", "conversation", "model_name"]
    rows = generated(gen)
    with_system = [r for r in rows if r["conversation"] is not None]
    assert 0 < len(with_system) < len(rows)
    for row in rows:
        if row["conversation"] is None:
            assert row["instruction"] == "Asked under: nothing"
        else:
            assert row["conversation"][0] == {"role": "system", "content": "Be brief."}
            assert row["instruction"] is None
