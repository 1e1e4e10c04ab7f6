"""Images into a transformers vision-language model: a real tiny Llava (random weights, built
on the fly by ``alambic.testing.tiny_vlm``), its processor's chat template and image
preprocessing, ``pixel_values`` into ``generate``, in ``TransformersLLM`` and in a pipeline."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from alambic.llms._content import image_part
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGenerationWithImage

Image = pytest.importorskip("PIL.Image")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from alambic.llms.transformers import TransformersLLM  # noqa: E402
from alambic.testing.tiny_vlm import IMAGE_SIZE, IMAGE_TOKENS_PER_IMAGE  # noqa: E402


def picture(colour: tuple[int, int, int], size: tuple[int, int] = (24, 12)) -> Any:
    # a gradient, so resizing and cropping keep something of the colour and shape
    image = Image.new("RGB", size, color=colour)
    for x in range(size[0]):
        image.putpixel((x, 0), (x * 10 % 256, 0, 0))
    return image


def ask(question: str, *images: Any) -> list[dict[str, Any]]:
    parts: list[Any] = [{"type": "text", "text": question}]
    parts += [image_part(i) for i in images]
    return [{"role": "user", "content": parts}]


@pytest.fixture(scope="module")
def vlm(tiny_vlm_path: Path) -> Any:
    llm = TransformersLLM(model=str(tiny_vlm_path))
    llm.load()
    yield llm
    llm.unload()


def test_the_vlm_loads_with_its_processor(vlm: Any) -> None:
    assert type(vlm._model).__name__ == "LlavaForConditionalGeneration"
    assert type(vlm._processor).__name__ == "LlavaProcessor"
    prompt = vlm.prepare_prompt(ask("What is it?", picture((255, 0, 0))))
    assert prompt == "<|im_start|>user\nWhat is it?<image><|im_end|>\n<|im_start|>assistant\n"
    assert vlm.prepare_prompt([{"role": "user", "content": "hi"}]).endswith("assistant\n")


def test_images_become_pixel_values_and_image_tokens(vlm: Any) -> None:
    two = ask("Compare", picture((255, 0, 0)), picture((0, 0, 255), size=(8, 30)))
    one = ask("Describe this longer question", picture((0, 255, 0)))
    images = [vlm._images_of(two), vlm._images_of(one)]
    assert [len(row) for row in images] == [2, 1]
    encoded = vlm.encode([vlm.prepare_prompt(two), vlm.prepare_prompt(one)], images)
    assert tuple(encoded["pixel_values"].shape) == (3, 3, IMAGE_SIZE, IMAGE_SIZE)
    image_id = vlm._model.config.image_token_id
    counts = (encoded["input_ids"] == image_id).sum(dim=1).tolist()
    assert counts == [2 * IMAGE_TOKENS_PER_IMAGE, IMAGE_TOKENS_PER_IMAGE]
    mask = encoded["attention_mask"]
    short = int(mask.sum(dim=1).argmin())
    assert (mask[short, 0].item(), mask[short, -1].item()) == (0, 1)  # left padding


def test_different_images_give_different_logits(vlm: Any) -> None:
    def last_logits(image: Any) -> Any:
        messages = ask("What colour?", image)
        encoded = vlm.encode([vlm.prepare_prompt(messages)], [vlm._images_of(messages)])
        with torch.inference_mode():
            return vlm._model(**encoded).logits[0, -1]

    red, blue = last_logits(picture((255, 0, 0))), last_logits(picture((0, 0, 255)))
    assert torch.equal(red, last_logits(picture((255, 0, 0))))
    assert (red - blue).abs().max().item() > 1e-4


def test_text_only_model_refuses_images(tiny_model_path: Path) -> None:
    llm = TransformersLLM(model=str(tiny_model_path))
    with pytest.raises(ValueError, match=r"text-only model .* vision-language model"):
        llm.generate([ask("x", picture((1, 2, 3)))], max_new_tokens=2)


def test_text_generation_with_image_runs_on_the_vlm(
    tiny_vlm_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers.models.clip import modeling_clip

    seen: list[tuple[int, ...]] = []
    forward = modeling_clip.CLIPVisionModel.forward

    def watched(self: Any, pixel_values: Any = None, *args: Any, **kwargs: Any) -> Any:
        seen.append(tuple(pixel_values.shape))
        return forward(self, pixel_values, *args, **kwargs)

    monkeypatch.setattr(modeling_clip.CLIPVisionModel, "forward", watched)
    path = tmp_path / "green.png"
    picture((0, 255, 0)).save(path)
    buffer = io.BytesIO()
    picture((0, 0, 255), size=(40, 40)).save(buffer, format="JPEG")
    rows = [
        {"instruction": "Red?", "image": picture((255, 0, 0))},
        {"instruction": "Green?", "image": str(path)},
        {"instruction": "Blue?", "image": buffer.getvalue()},
    ]
    llm = TransformersLLM(
        model=str(tiny_vlm_path),
        generation_kwargs={"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False},
    )
    with Pipeline(name="tiny-vlm") as pipeline:
        load = LoadDataFromDicts(data=rows)
        load >> TextGenerationWithImage(name="vlm", llm=llm, input_batch_size=3)
    out = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert len(out) == 3
    for row in out:
        assert isinstance(row["generation"], str)
        assert row["model_name"] == str(tiny_vlm_path)
        stats = row["alambic_metadata"]["statistics_vlm"]
        assert stats["output_tokens"] == 4
        assert stats["input_tokens"] > IMAGE_TOKENS_PER_IMAGE  # the image tokens are prompt
    # the vision tower saw the three images, preprocessed to the model's size
    assert sum(shape[0] for shape in seen) == 3
    assert {shape[1:] for shape in seen} == {(3, IMAGE_SIZE, IMAGE_SIZE)}
