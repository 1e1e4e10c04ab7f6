"""Shared pytest fixtures for the alambic test suite.

Sections (add new fixtures to the matching section, or start a new one):

1. markers and hermetic environment (autouse)
2. tiny local models (session scope: built once)
3. the fake OpenAI-compatible server (``alambic.testing.openai_server``)
4. ``transformers serve`` on the tiny model (session scope, slow)
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Hugging Face libraries read these once, at import: set them before anything imports them, so
# no test ever waits on an unreachable hub (the autouse fixture below keeps them set per test).
for _flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_flag, "1")

if importlib.util.find_spec("alambic") is None:  # not installed: test the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alambic.testing.openai_server import OpenAITestServer, ServerConfig  # noqa: E402
from alambic.testing.processes import free_port, serve_process  # noqa: E402

# --------------------------------------------------------------------------- 1. markers / env

_MARKERS = {
    "slow": "takes more than a few seconds (runs in CI)",
    "gpu": "needs a CUDA GPU (skipped with a reason elsewhere)",
    "llamacpp": "needs llama-cpp-python installed",
    "ray": "runs a real local Ray instance or cluster (alambic[ray])",
}

# Provider credentials and endpoints that must never leak from the developer's shell
# into tests (a test would silently hit a real API, or an SDK would change base URL).
_UNSET_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "ANTHROPIC_API_KEY",
    "MISTRAL_API_KEY",
    "COHERE_API_KEY",
    "CO_API_KEY",
    "GROQ_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register markers here too, so ``--strict-markers`` works without pyproject."""
    for name, help_text in _MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {help_text}")


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Per-test cache dir, offline Hugging Face libraries, no provider credentials."""
    monkeypatch.setenv("ALAMBIC_CACHE_DIR", str(tmp_path / "alambic-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for name in _UNSET_ENV:
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- 2. tiny models


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama chat model folder (~1 MB), built once per session."""
    pytest.importorskip("transformers")
    from alambic.testing.tiny_model import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model") / "model")


@pytest.fixture(scope="session")
def tiny_vlm_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llava vision-language model with its processor (~1 MB), built once
    (with the tiny chat model's tokenizer)."""
    from alambic.testing.tiny_vlm import build_tiny_vlm

    folder = tmp_path_factory.mktemp("tiny-vlm") / "model"
    return build_tiny_vlm(folder, tokenizer_from=tiny_model_path)


@pytest.fixture(scope="session")
def tiny_reward_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama sequence-classification (reward) model, built once."""
    pytest.importorskip("transformers")
    from alambic.testing.tiny_model import build_tiny_reward_model

    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny-reward-model") / "model")


@pytest.fixture(scope="session")
def tiny_gguf_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chat model as a GGUF file for llama.cpp (in a folder of its own: the model's
    folder stays exactly what ``build_tiny_chat_model`` wrote)."""
    pytest.importorskip("gguf", reason="writing a GGUF needs the gguf package (alambic[dev])")
    from alambic.testing.tiny_gguf import build_tiny_gguf

    return build_tiny_gguf(tiny_model_path, tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")


# --------------------------------------------------------------------------- 3. fake OpenAI server


@pytest.fixture
def openai_server() -> Iterator[OpenAITestServer]:
    """A started in-process OpenAI-compatible test server with the default config."""
    with OpenAITestServer() as server:
        yield server


@pytest.fixture
def openai_server_factory() -> Iterator[Callable[..., OpenAITestServer]]:
    """``factory(config=None, **knobs)`` starts a server; all are stopped at teardown."""
    servers: list[OpenAITestServer] = []

    def factory(config: ServerConfig | None = None, **knobs: Any) -> OpenAITestServer:
        server = OpenAITestServer(config, **knobs)
        server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


# --------------------------------------------------------------------------- 4. transformers serve


def _transformers_cli() -> str | None:
    """The ``transformers`` CLI of this interpreter's environment, else on PATH."""
    candidate = Path(sys.executable).parent / "transformers"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("transformers")


@pytest.fixture(scope="session")
def transformers_serve(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``transformers serve`` on the tiny chat model; yields ``http://127.0.0.1:P/v1``.

    Starts in ~8 s on CPU.  ``HF_HOME`` points at a temporary folder with a ``hub/``
    subfolder because ``/v1/models`` errors when ``$HF_HOME/hub`` is missing.
    """
    cli = _transformers_cli()
    if cli is None:
        pytest.skip("the `transformers` CLI is not installed (pip install 'transformers[serving]')")
    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(module, reason=f"transformers serve needs {module}")

    home = tmp_path_factory.mktemp("hf-home")
    (home / "hub").mkdir()
    port = free_port()
    env = {
        **os.environ,
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    cmd = [cli, "serve", str(tiny_model_path), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--device", "cpu"]
    root = f"http://127.0.0.1:{port}"
    with serve_process(
        cmd,
        f"{root}/v1/models",
        name="transformers serve",
        log_path=home / "serve.log",
        timeout=120,
        env=env,
    ):
        yield f"{root}/v1"


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for this test, for full-disk faults (needs root and a kernel
    that allows it; skipped, with the reason, where the machine cannot mount one)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
