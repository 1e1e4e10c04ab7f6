"""ImageGeneration with DiffusersImageGeneration: a real diffusers text-to-image pipeline (a
tiny random Stable Diffusion built on the fly by ``alambic.testing.tiny_diffusion``) run in
process; its images land in the Distiset as ``datasets.Image``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import ModelNotAvailableError
from alambic.llms.image_generation import DiffusersImageGeneration
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import ImageGeneration

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("diffusers")

from alambic.testing.tiny_diffusion import TINY_IMAGE_SIZE, build_tiny_diffusion_pipeline  # noqa: E402

STEPS = {"num_inference_steps": 2}


@pytest.fixture(scope="module")
def tiny_diffusion_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-diffusion") / "pipeline"
    return build_tiny_diffusion_pipeline(folder, tokenizer_from=tiny_model_path)


def decode(data: bytes | None) -> Any:
    assert data is not None
    assert data.startswith(b"\x89PNG")
    return Image.open(io.BytesIO(data))


@pytest.mark.slow
def test_the_pipeline_draws_png_images_per_prompt(tiny_diffusion_path: Path) -> None:
    model = DiffusersImageGeneration(
        model=str(tiny_diffusion_path), batch_size=2, generation_kwargs={**STEPS, "seed": 7}
    )
    model.load()
    assert type(model._pipeline).__name__ == "StableDiffusionPipeline"
    outputs = model.generate(["a red fox", "a blue sea", "a green hill"], num_generations=2)
    assert [len(o.images) for o in outputs] == [2, 2, 2]
    assert all(e is None for o in outputs for e in o.errors)
    pictures = [decode(image) for o in outputs for image in o.images]
    assert {(p.size, p.mode) for p in pictures} == {((TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), "RGB")}
    flat = [image for o in outputs for image in o.images]
    assert len(set(flat)) == 6  # every image its own draw
    # the same seed draws the same images again; another seed does not
    assert model.generate(["a red fox", "a blue sea", "a green hill"], 2)[0].images == (
        outputs[0].images
    )
    other = DiffusersImageGeneration(
        model=str(tiny_diffusion_path), generation_kwargs={**STEPS, "seed": 8}
    )
    assert other.generate(["a red fox"], 2)[0].images != outputs[0].images
    model.unload()


@pytest.mark.slow
def test_image_generation_step_writes_an_image_column(
    tiny_diffusion_path: Path, tmp_path: Path
) -> None:
    import datasets

    model = DiffusersImageGeneration(model=str(tiny_diffusion_path), generation_kwargs=STEPS)
    with Pipeline(name="local-images") as pipeline:
        load = LoadDataFromDicts(data=[{"prompt": "a watercolour fox"}, {"prompt": "a cat"}])
        load >> ImageGeneration(name="draw", llm=model, num_generations=2)
    train = pipeline.run(use_cache=False, show_progress=False)["default"]["train"]
    assert isinstance(train.features["image"], datasets.Image)
    rows = [train[i] for i in range(len(train))]
    assert [r["prompt"] for r in rows] == ["a watercolour fox"] * 2 + ["a cat"] * 2
    assert {r["image"].size for r in rows} == {(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)}
    assert {r["model_name"] for r in rows} == {str(tiny_diffusion_path)}
    train.save_to_disk(str(tmp_path / "ds"))
    again = datasets.load_from_disk(str(tmp_path / "ds"))
    assert again[0]["image"].convert("RGB").tobytes() == rows[0]["image"].convert("RGB").tobytes()


def test_bad_settings_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"torch_dtype='float17'\) is not a torch dtype"):
        DiffusersImageGeneration(model=str(tmp_path), torch_dtype="float17").load()
    with pytest.raises(ModelNotAvailableError, match=r"model_index\.json"):
        DiffusersImageGeneration(model=str(tmp_path / "missing")).load()
