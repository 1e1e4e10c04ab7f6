"""The formatting steps inside a real pipeline, as the last steps before saving."""

from __future__ import annotations

from alambic.pipeline import Pipeline
from alambic.steps import (
    FormatChatGenerationDPO,
    FormatChatGenerationSFT,
    FormatTextGenerationDPO,
    FormatTextGenerationSFT,
    LoadDataFromDicts,
)

CHAT = [{"role": "user", "content": "Hi"}]
ROWS = [
    {
        "instruction": "Hi",
        "messages": CHAT,
        "generation": "Hello!",
        "generations": ["Hello!", "Go away."],
        "scores": [0.9, -1.5],
    },
    {
        "instruction": "Tie",
        "messages": [{"role": "user", "content": "Tie"}],
        "generation": None,
        "generations": ["a", "b"],
        "scores": [1.0, 1.0],
    },
]


def test_formatting_steps_in_a_pipeline() -> None:
    with Pipeline(name="formatting") as pipeline:
        load = LoadDataFromDicts(data=ROWS)
        load >> [
            FormatTextGenerationSFT(name="text_sft"),
            FormatChatGenerationSFT(name="chat_sft"),
            FormatTextGenerationDPO(
                name="text_dpo", input_mappings={"ratings": "scores"}, add_pair_status=True
            ),
            FormatChatGenerationDPO(
                name="chat_dpo", input_mappings={"ratings": "scores"}, tie_strategy="drop"
            ),
        ]
    distiset = pipeline.run(use_cache=False, show_progress=False)
    text_sft = distiset["text_sft"]["train"].to_list()
    assert text_sft[0]["messages"] == [*CHAT, {"role": "assistant", "content": "Hello!"}]
    assert text_sft[1]["messages"] is None
    assert distiset["chat_sft"]["train"][0]["prompt"] == "Hi"
    text_dpo = distiset["text_dpo"]["train"].to_list()
    assert [r["pair_status"] for r in text_dpo] == ["ok", "tie"]
    assert text_dpo[0]["chosen_rating"] == 0.9
    assert text_dpo[0]["rejected"][-1]["content"] == "Go away."
    assert text_dpo[0]["scores"] == [0.9, -1.5]  # the mapped input column keeps its name
    chat_dpo = distiset["chat_dpo"]["train"].to_list()
    assert len(chat_dpo) == 1
    assert chat_dpo[0]["chosen"] == [*CHAT, {"role": "assistant", "content": "Hello!"}]
