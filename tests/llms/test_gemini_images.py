"""Image parts sent to Gemini as its native parts (``inline_data`` bytes, ``file_data``
URIs) by the real ``google-genai`` client, to the local Gemini test server, which decodes
and checks what it received."""

from __future__ import annotations

import io
from typing import Any

import pytest

from alambic.llms._content import image_part
from alambic.llms.vertexai import VertexAILLM, to_gemini_contents, to_gemini_parts
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import TextGenerationWithImage
from alambic.testing.gemini_server import IMAGE_TOKENS, GeminiTestServer

Image = pytest.importorskip("PIL.Image")


def png(colour: tuple[int, int, int], size: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color=colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color=(0, 0, 255)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_parts_are_gemini_native() -> None:
    red = png((255, 0, 0))
    content = [
        {"type": "text", "text": "Compare"},
        image_part(red),
        image_part("https://example.org/cat.webp?size=small"),
    ]
    assert to_gemini_parts(content) == [
        {"text": "Compare"},
        {"inline_data": {"mime_type": "image/png", "data": red}},
        {
            "file_data": {
                "file_uri": "https://example.org/cat.webp?size=small",
                "mime_type": "image/webp",
            }
        },
    ]
    system, contents = to_gemini_contents(
        [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": content},
        ]
    )
    assert system == "Be brief."
    assert contents[0]["parts"][1]["inline_data"]["data"] == red
    with pytest.raises(ValueError, match="'audio'"):
        to_gemini_parts([{"type": "audio", "audio": "x"}])


def test_the_server_receives_the_image_bytes() -> None:
    red, blue = png((255, 0, 0)), jpeg()
    with GeminiTestServer() as server:
        llm = VertexAILLM(model="gemini-test", base_url=server.url, api_key="k")
        llm.load()
        messages: Any = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "two pictures"},
                    image_part(red),
                    image_part(blue),
                    image_part("https://example.org/a.png"),
                ],
            }
        ]
        [out] = llm.generate([messages])
    assert out["generations"] == ["reply to: two pictures [3 images]"]
    assert server.images == [("image/png", red), ("image/jpeg", blue)]
    assert server.file_uris == ["https://example.org/a.png"]
    assert out["statistics"]["input_tokens"] == [2 + 3 * IMAGE_TOKENS]
    wire = server.requests[0]["contents"][0]["parts"]
    assert [sorted(p) for p in wire] == [["text"], ["inlineData"], ["inlineData"], ["fileData"]]


def test_the_server_refuses_bytes_that_are_not_the_stated_image() -> None:
    with GeminiTestServer() as server:
        llm = VertexAILLM(model="gemini-test", base_url=server.url, api_key="k")
        bad = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,R0lGODlh"}}]
        [out] = llm.generate([[{"role": "user", "content": bad}]])
    assert out["generations"] == [None]
    assert "not a image/png image" in out["errors"][0]["message"]  # type: ignore[index]
    assert server.images == []


def test_text_generation_with_image_on_gemini(tmp_path: Any) -> None:
    colours = [(255, 0, 0), (0, 255, 0)]
    path = tmp_path / "green.png"
    path.write_bytes(png(colours[1], size=6))
    rows = [
        {"instruction": "What colour?", "image": Image.new("RGB", (4, 4), color=colours[0])},
        {"instruction": "And this one?", "image": str(path)},
    ]
    with GeminiTestServer() as server:
        with Pipeline(name="gemini-vision") as pipeline:
            load = LoadDataFromDicts(data=rows)
            llm = VertexAILLM(model="gemini-test", base_url=server.url, api_key="k")
            load >> TextGenerationWithImage(name="vlm", llm=llm, input_batch_size=1)
        out = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
        received = sorted(server.images, key=lambda item: len(item[1]))
    assert sorted(r["generation"] for r in out) == [
        "reply to: And this one? [1 image]",
        "reply to: What colour? [1 image]",
    ]
    pictures = [Image.open(io.BytesIO(data)) for _, data in received]
    assert sorted(p.size for p in pictures) == [(4, 4), (6, 6)]
    assert {p.convert("RGB").getpixel((0, 0)) for p in pictures} == set(colours)
