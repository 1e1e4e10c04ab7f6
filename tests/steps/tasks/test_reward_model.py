"""RewardModelScore on the tiny local reward model (real transformers forward passes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alambic.errors import ColumnTypeError, ModelNotAvailableError
from alambic.steps.tasks.reward_model import RewardModelScore

pytest.importorskip("transformers")

ROWS = [
    {"instruction": "Say hi", "generation": "Hi there!"},
    {"instruction": "Say hi", "generation": "Go away."},
    {"instruction": "Say hi", "generation": None},
    {"instruction": "Say hi", "generation": "Hi there!", "system_prompt": "Be nice."},
]


@pytest.fixture(scope="module")
def scorer(tiny_reward_model_path: Path) -> RewardModelScore:
    step = RewardModelScore(model=str(tiny_reward_model_path), batch_size=2)
    step.load()
    return step


def test_scores_are_floats_and_deterministic(scorer: RewardModelScore) -> None:
    rows = next(scorer.process(ROWS))
    scores = [r["score"] for r in rows]
    assert all(isinstance(s, float) for s in (scores[0], scores[1], scores[3]))
    assert scores[2] is None  # a failed generation is not scored
    assert scores[0] != scores[1]
    assert scores[0] != scores[3]  # the system prompt is part of the scored conversation
    again = [r["score"] for r in next(scorer.process(ROWS))]
    assert again[2] is None
    assert [again[i] for i in (0, 1, 3)] == pytest.approx([scores[i] for i in (0, 1, 3)], abs=1e-5)
    assert rows[0]["instruction"] == "Say hi"
    assert "score" not in ROWS[0]


def test_batching_does_not_change_scores(
    scorer: RewardModelScore, tiny_reward_model_path: Path
) -> None:
    single = RewardModelScore(model=str(tiny_reward_model_path), batch_size=1)
    single.load()
    batched = [r["score"] for r in next(scorer.process(ROWS[:2]))]
    one_by_one = [r["score"] for r in next(single.process(ROWS[:2]))]
    assert one_by_one == pytest.approx(batched, abs=1e-4)


def test_scores_match_a_direct_forward_pass(
    scorer: RewardModelScore, tiny_reward_model_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_reward_model_path))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_reward_model_path))
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Go away."}],
        tokenize=False,
    )
    with torch.no_grad():
        expected = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[
            0, 0
        ]
    assert scorer.score(
        [[{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Go away."}]]
    ) == [pytest.approx(float(expected), abs=1e-4)]


def test_bad_columns(scorer: RewardModelScore) -> None:
    with pytest.raises(ColumnTypeError, match="ExpandColumns"):
        next(scorer.process([{"instruction": "q", "generation": ["a", "b"]}]))
    with pytest.raises(ColumnTypeError, match="'instruction' must hold text"):
        next(scorer.process([{"instruction": None, "generation": "a"}]))


def test_columns() -> None:
    step = RewardModelScore(model="unused")
    assert step.get_inputs() == {"instruction": True, "generation": True, "system_prompt": False}
    assert step.get_outputs() == {"score": True}


def test_a_folder_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="could not load the reward model in"):
        RewardModelScore(model=str(tmp_path)).load()
