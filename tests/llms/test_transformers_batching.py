"""TransformersLLM batching control and device placement, on the tiny test model."""

from __future__ import annotations

from pathlib import Path

from alambic.llms.transformers import TransformersLLM

PROMPTS = [
    [{"role": "user", "content": "a much longer request, with many more words in it than others"}],
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "a medium request here"}],
]


def _prompt_tokens(llm: TransformersLLM, messages: list[dict[str, str]]) -> int:
    return len(llm._tokenizer(llm.prepare_prompt(messages), add_special_tokens=False)["input_ids"])


def test_three_prompts_in_batches_of_two_stay_in_order(tiny_model_path: Path) -> None:
    llm = TransformersLLM(model=str(tiny_model_path), batch_size=2)
    llm.load()
    outs = llm.generate(PROMPTS, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert len(outs) == 3
    expected = [_prompt_tokens(llm, p) for p in PROMPTS]
    assert expected[0] > expected[2] > expected[1]
    assert [o["statistics"]["input_tokens"] for o in outs] == [[n] for n in expected]
    assert [o["statistics"]["output_tokens"] for o in outs] == [[3], [3], [3]]
    assert all(isinstance(o["generations"][0], str) for o in outs)


def test_unsorted_batching_gives_the_same_statistics(tiny_model_path: Path) -> None:
    llm = TransformersLLM(model=str(tiny_model_path), batch_size=2, sort_by_length=False)
    outs = llm.generate(PROMPTS, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    sorted_llm = TransformersLLM(model=str(tiny_model_path), batch_size=2)
    sorted_outs = sorted_llm.generate(PROMPTS, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    assert [o["statistics"] for o in outs] == [o["statistics"] for o in sorted_outs]


def test_complete_batches_raw_prompts_in_order(tiny_model_path: Path) -> None:
    llm = TransformersLLM(model=str(tiny_model_path), batch_size=2)
    outs = llm.complete(["a b c d e f g", "x", "p q r"], max_new_tokens=2, min_new_tokens=2)
    counts = [o["statistics"]["input_tokens"][0] for o in outs]
    assert counts[0] > counts[2] > counts[1]
    assert [o["statistics"]["output_tokens"] for o in outs] == [[2], [2], [2]]


def test_device_auto_picks_cuda_when_available(tiny_model_path: Path) -> None:
    import torch

    llm = TransformersLLM(model=str(tiny_model_path), device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert llm.resolved_device() == expected
    llm.load()
    assert llm._model.device.type == expected
    assert TransformersLLM(model="m", device="cuda:1").resolved_device() == "cuda:1"
    assert TransformersLLM(model="m", device=None).resolved_device() == "cpu"
