"""ImageGeneration with OpenAIImageGeneration: the real OpenAI SDK against a local server
speaking /v1/images/generations; images land in the Distiset as ``datasets.Image``."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import MissingAPIKeyError
from alambic.llms.image_generation import OpenAIImageGeneration
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import ImageGeneration
from alambic.testing.processes import free_port

Image = pytest.importorskip("PIL.Image")

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255)}


class ImagesHandler(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        ImagesHandler.requests.append({"path": self.path, "body": body})
        prompt = body["prompt"]
        if "FAIL" in prompt:
            self._send(
                400, {"error": {"message": "prompt refused", "type": "invalid_request_error"}}
            )
            return
        colour = next((c for name, c in COLOURS.items() if name in prompt), (0, 0, 0))
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), color=colour).save(buffer, format="PNG")
        data = [{"b64_json": base64.b64encode(buffer.getvalue()).decode()}] * body.get("n", 1)
        self._send(200, {"created": 0, "data": data})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def images_server() -> Iterator[str]:
    ImagesHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), ImagesHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_images_are_generated_and_typed_as_images(images_server: str, tmp_path: Path) -> None:
    import datasets

    model = OpenAIImageGeneration(
        model="img", base_url=images_server, max_retries=0, generation_kwargs={"size": "256x256"}
    )
    with Pipeline(name="images") as pipeline:
        load = LoadDataFromDicts(
            data=[{"prompt": "a red square"}, {"prompt": "FAIL"}, {"prompt": "blue"}]
        )
        load >> ImageGeneration(name="draw", llm=model)
    train = pipeline.run(use_cache=False, show_progress=False)["default"]["train"]
    assert isinstance(train.features["image"], datasets.Image)
    rows = [train[i] for i in range(len(train))]
    assert rows[0]["image"].size == (8, 8)
    assert rows[0]["image"].convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert rows[2]["image"].convert("RGB").getpixel((0, 0)) == (0, 0, 255)
    assert rows[1]["image"] is None
    assert "prompt refused" in rows[1]["alambic_metadata"]["error_draw"]["message"]
    assert rows[0]["model_name"] == "img"
    sent = ImagesHandler.requests[0]
    assert sent["path"] == "/v1/images/generations"
    assert sent["body"]["response_format"] == "b64_json"
    assert sent["body"]["size"] == "256x256"
    # saved and loaded back, the column is still an image column
    train.save_to_disk(str(tmp_path / "ds"))
    again = datasets.load_from_disk(str(tmp_path / "ds"))
    assert isinstance(again.features["image"], datasets.Image)


def test_several_images_per_prompt(images_server: str) -> None:
    step = ImageGeneration(
        name="draw",
        llm=OpenAIImageGeneration(model="img", base_url=images_server, max_retries=0),
        num_generations=2,
    )
    step.load()
    rows = next(step.process([{"prompt": "blue"}]))
    assert len(rows) == 2
    assert all(r["image"]["bytes"].startswith(b"\x89PNG") for r in rows)
    assert ImagesHandler.requests[-1]["body"]["n"] == 2


def test_a_remote_server_needs_a_key_and_the_key_is_not_serialised() -> None:
    model = OpenAIImageGeneration(model="img", base_url="https://images.example.com/v1")
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        model.load()
    secret = OpenAIImageGeneration(model="img", api_key="sk-very-secret")
    assert "sk-very-secret" not in json.dumps(secret.model_dump(mode="json"))
    assert "sk-very-secret" not in repr(secret)
    with Pipeline(name="images-yaml") as pipeline:
        LoadDataFromDicts(data=[{"prompt": "x"}]) >> ImageGeneration(name="draw", llm=secret)
    text = pipeline.to_yaml()
    assert "OpenAIImageGeneration" in text
    assert "sk-very-secret" not in text


def test_distilabels_save_images_forms(images_server: str, tmp_path: Path) -> None:
    import hashlib

    def model() -> OpenAIImageGeneration:
        return OpenAIImageGeneration(model="img", base_url=images_server, max_retries=0)

    with Pipeline(name="images-forms") as pipeline:
        load = LoadDataFromDicts(data=[{"prompt": "a red square"}, {"prompt": "FAIL"}])
        as_text = ImageGeneration(name="as_text", llm=model(), save_images=False)
        as_file = ImageGeneration(name="as_file", llm=model(), save_images=True, image_format="PNG")
        load >> [as_text, as_file]
    distiset = pipeline.run(use_cache=False, show_progress=False)
    text_rows = distiset["as_text"]["train"].to_list()
    file_rows = distiset["as_file"]["train"].to_list()
    # save_images=False: a base64 string of a JPEG (distilabel's default format)
    decoded = base64.b64decode(text_rows[0]["image"])
    assert decoded.startswith(b"\xff\xd8")  # JPEG magic
    assert Image.open(io.BytesIO(decoded)).convert("RGB").getpixel((0, 0))[0] > 240
    assert text_rows[1]["image"] is None
    # save_images=True: the file is an artifact, the column holds its path in the saved folder
    digest = hashlib.md5(b"a red square", usedforsecurity=False).hexdigest()
    assert file_rows[0]["image"] == f"artifacts/as_file/images/artifacts/{digest}.png"
    assert file_rows[1]["image"] is None
    folder = tmp_path / "saved"
    distiset.save_to_disk(folder)
    with Image.open(folder / file_rows[0]["image"]) as picture:
        assert picture.format == "PNG"
        assert picture.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
