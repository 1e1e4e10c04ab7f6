"""Images in messages: content parts from URLs, paths, base64, bytes and PIL images, sent by
the real OpenAI client to the OpenAI-compatible test server, and converted for Anthropic."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms._content import content_text, image_part, image_to_data_url
from alambic.llms.anthropic import to_anthropic_messages
from alambic.llms.fake import FakeLLM
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGenerationWithImage

Image = pytest.importorskip("PIL.Image")


def red_square() -> Any:
    return Image.new("RGB", (4, 4), color=(255, 0, 0))


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    red_square().save(buffer, format="PNG")
    return buffer.getvalue()


def decode(url: str) -> Any:
    header, data = url.split(",", 1)
    assert header == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_every_kind_of_image_becomes_a_data_url(tmp_path: Path) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes())
    encoded = base64.b64encode(png_bytes()).decode()
    for image in (red_square(), png_bytes(), path, str(path), encoded):
        picture = decode(image_to_data_url(image))
        assert picture.size == (4, 4)
        assert picture.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert image_to_data_url("https://example.org/cat.png") == "https://example.org/cat.png"
    assert image_part("https://x/y.png") == {
        "type": "image_url",
        "image_url": {"url": "https://x/y.png"},
    }
    with pytest.raises(ValueError, match="neither a URL"):
        image_to_data_url("not an image at all")
    with pytest.raises(ValueError, match="not a PNG"):
        image_to_data_url(b"GARBAGE BYTES")


def test_task_builds_text_and_image_parts() -> None:
    task = TextGenerationWithImage(name="vlm", llm=FakeLLM(), system_prompt="Be brief.")
    assert task.get_inputs() == {"instruction": True, "system_prompt": False, "image": True}
    messages = task.format_input({"instruction": "What colour?", "image": png_bytes()})
    assert messages[0] == {"role": "system", "content": "Be brief."}
    parts: Any = messages[1]["content"]
    assert parts[0] == {"type": "text", "text": "What colour?"}
    assert decode(parts[1]["image_url"]["url"]).size == (4, 4)
    assert content_text(parts) == "What colour?"
    with pytest.raises(ColumnTypeError, match="'image' does not hold a usable image"):
        task.format_input({"instruction": "x", "image": "no such file or base64"})
    with pytest.raises(ColumnTypeError, match="'image' is empty"):
        task.format_input({"instruction": "x", "image": None})


def test_the_openai_client_sends_the_image_to_a_server(
    openai_server_factory: Callable[..., Any], tmp_path: Path
) -> None:
    from alambic.llms.openai import OpenAILLM

    def describe(request: dict[str, Any], index: int) -> str:
        parts = request["messages"][-1]["content"]
        picture = decode(parts[1]["image_url"]["url"]).convert("RGB")
        return f"{parts[0]['text']} -> {picture.size} {picture.getpixel((0, 0))}"

    server = openai_server_factory(reply=describe)
    path = tmp_path / "red.png"
    path.write_bytes(png_bytes())
    with Pipeline(name="vlm") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "Describe", "picture": str(path)}])
        load >> TextGenerationWithImage(
            name="vlm",
            llm=OpenAILLM(model="vlm", base_url=server.base_url, max_retries=0),
            image_column="picture",
        )
    row = pipeline.run(use_cache=False, show_progress=False)["default"]["train"][0]
    assert row["generation"] == "Describe -> (4, 4) (255, 0, 0)"
    sent = row["alambic_metadata"]["raw_input_vlm"][-1]["content"]
    assert sent[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_anthropic_messages_get_image_blocks() -> None:
    url = image_to_data_url(png_bytes())
    system, turns = to_anthropic_messages(
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, image_part(url)]},  # type: ignore[typeddict-item]
        ]
    )
    assert system == "sys"
    blocks = turns[0]["content"]
    assert blocks[0] == {"type": "text", "text": "hi"}
    assert blocks[1]["type"] == "image"
    assert blocks[1]["source"]["media_type"] == "image/png"
    assert base64.b64decode(blocks[1]["source"]["data"]) == png_bytes()
    _, remote = to_anthropic_messages(
        [{"role": "user", "content": [image_part("https://x/y.png")]}]  # type: ignore[typeddict-item]
    )
    assert remote[0]["content"][0]["source"] == {"type": "url", "url": "https://x/y.png"}
