"""vLLM offline: conversations with images in the message form ``LLM.chat`` reads, and
replies split by a reasoning parser. vLLM itself cannot run here (no GPU, not installed):
these tests check the structures alambic hands to the engine and reads back, with a
recording stand-in for ``vllm.LLM`` and parsers that follow vLLM's parser interface."""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace
from typing import Any

import pytest

from alambic.llms._content import image_part
from alambic.llms.cache import InMemoryRequestCache
from alambic.llms.vllm import (
    has_images,
    request_output_to_generate_output,
    split_reasoning,
    to_vllm_messages,
    vLLM,
)
from alambic.steps.tasks import TextGenerationWithImage

Image = pytest.importorskip("PIL.Image")


class ThinkTagParser:
    """vLLM 0.7-0.10 interface: ``extract_reasoning_content(model_output, request)``."""

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer

    def extract_reasoning_content(self, model_output: str, request: Any) -> tuple[Any, Any]:
        if "</think>" not in model_output:
            return None, model_output
        reasoning, _, content = model_output.partition("</think>")
        return reasoning.replace("<think>", "").strip(), content.strip() or None


class NewThinkTagParser(ThinkTagParser):
    """vLLM 0.11+ interface: ``extract_reasoning``."""

    def extract_reasoning(self, model_output: str, request: Any) -> tuple[Any, Any]:
        return ThinkTagParser.extract_reasoning_content(self, model_output, request)

    def extract_reasoning_content(self, model_output: str, request: Any) -> tuple[Any, Any]:
        raise AssertionError("the newer method is preferred")


def completion(index: int, text: str, tokens: int) -> Any:
    return SimpleNamespace(index=index, text=text, token_ids=list(range(tokens)))


def picture(colour: tuple[int, int, int]) -> Any:
    return Image.new("RGB", (5, 3), color=colour)


def test_messages_with_images_are_in_llm_chat_form() -> None:
    task = TextGenerationWithImage(name="vlm", llm=vLLM(model="m"), system_prompt="Be brief.")
    messages = task.format_input({"instruction": "Colour?", "image": picture((0, 0, 255))})
    assert has_images(messages)
    assert not has_images([{"role": "user", "content": "text only"}])
    converted = to_vllm_messages(messages)
    assert converted[0] == {"role": "system", "content": "Be brief."}
    assert converted[1]["role"] == "user"
    text, image = converted[1]["content"]
    assert text == {"type": "text", "text": "Colour?"}
    assert sorted(image) == ["image_url", "type"]
    url = image["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (5, 3)
    assert decoded.convert("RGB").getpixel((4, 2)) == (0, 0, 255)
    remote = to_vllm_messages([{"role": "user", "content": [image_part("https://x.org/a.jpg")]}])
    assert remote[0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x.org/a.jpg"}}
    ]
    with pytest.raises(ValueError, match="'input_audio'"):
        to_vllm_messages([{"role": "user", "content": [{"type": "input_audio"}]}])  # type: ignore[list-item]


@pytest.mark.parametrize("parser", [ThinkTagParser(), NewThinkTagParser()])
def test_reasoning_parser_splits_each_completion(parser: Any) -> None:
    output = SimpleNamespace(
        prompt_token_ids=[1, 2, 3, 4],
        outputs=[
            completion(1, "no tags here", 3),
            completion(0, "<think>7 is prime</think>Yes.", 9),
        ],
    )
    out = request_output_to_generate_output(output, parser)
    assert out == {
        "generations": ["Yes.", "no tags here"],
        "statistics": {"input_tokens": [4, 4], "output_tokens": [9, 3]},
        "reasonings": ["7 is prime", None],
    }
    assert split_reasoning(parser, "<think> </think>") == (None, "")
    plain = request_output_to_generate_output(output)
    assert plain["generations"] == ["<think>7 is prime</think>Yes.", "no tags here"]
    assert "reasonings" not in plain


class RecordingEngine:
    """Stands in for ``vllm.LLM``: records calls, answers with RequestOutput-shaped objects."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def _outputs(self, items: list[Any], params: Any) -> list[Any]:
        n = (params[0] if isinstance(params, list) else params)["n"]
        return [
            SimpleNamespace(
                prompt_token_ids=[0] * (i + 2),
                outputs=[completion(j, f"<think>r{i}.{j}</think>a{i}.{j}", 2) for j in range(n)],
            )
            for i in range(len(items))
        ]

    def chat(self, conversations: Any, **kwargs: Any) -> list[Any]:
        self.calls.append(("chat", conversations, kwargs))
        return self._outputs(conversations, kwargs["sampling_params"])

    def generate(self, prompts: Any, **kwargs: Any) -> list[Any]:
        self.calls.append(("generate", prompts, kwargs))
        return self._outputs(prompts, kwargs["sampling_params"])


class OfflineVLLM(vLLM):
    """``sampling_params`` without vllm installed (the real one builds vllm.SamplingParams)."""

    def sampling_params(self, generation_kwargs: Any, num_generations: int, schema: Any) -> Any:
        return {"n": num_generations, **generation_kwargs, "schema": schema}


def test_image_conversations_go_through_llm_chat_with_reasoning(tiny_model_path: Any) -> None:
    from transformers import AutoTokenizer

    llm = OfflineVLLM(model="vlm", reasoning_parser="deepseek_r1", batch_size=2)
    engine = RecordingEngine()
    llm._engine = engine
    llm._tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    llm._reasoning = ThinkTagParser(llm._tokenizer)  # what load() takes from vLLM's registry
    task = TextGenerationWithImage(name="vlm", llm=llm)
    inputs: list[Any] = [
        task.format_input({"instruction": "first", "image": picture((255, 0, 0))}),
        [{"role": "user", "content": "text only"}],
        task.format_input({"instruction": "third", "image": picture((0, 255, 0))}),
        task.format_input({"instruction": "fourth", "image": picture((0, 0, 0))}),
    ]
    cache = InMemoryRequestCache()
    llm.set_request_cache(cache)
    outs = llm.generate(inputs, num_generations=2, max_new_tokens=8)
    kinds = [(kind, len(items)) for kind, items, _ in engine.calls]
    assert kinds == [("chat", 2), ("chat", 1), ("generate", 1)]  # batch_size=2 chunks
    _, first_chunk, kwargs = engine.calls[0]
    assert first_chunk == [to_vllm_messages(inputs[0]), to_vllm_messages(inputs[2])]
    assert kwargs["add_generation_prompt"] is True
    assert kwargs["sampling_params"][0] == {"n": 2, "max_new_tokens": 8, "schema": None}
    assert engine.calls[2][1] == ["<|im_start|>user\ntext only<|im_end|>\n<|im_start|>assistant\n"]
    # results in input order; reasoning apart from the answer
    assert [o["generations"] for o in outs] == [
        ["a0.0", "a0.1"],
        ["a0.0", "a0.1"],
        ["a1.0", "a1.1"],
        ["a0.0", "a0.1"],
    ]
    assert outs[2]["reasonings"] == ["r1.0", "r1.1"]
    # a second call is answered by the request cache, reasoning included
    again = llm.generate(inputs, num_generations=2, max_new_tokens=8)
    assert len(engine.calls) == 3
    assert again == outs
