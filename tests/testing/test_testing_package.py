"""The test infrastructure that ships in the wheel: no pytest at import time, one package per
server, and the old import path of the OpenAI test server kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import alambic.testing

MODULES = [
    "alambic.testing.openai_server",
    "alambic.testing.openai_vendor_server",
    "alambic.testing.provider_checks",
    "alambic.testing.anthropic_server",
    "alambic.testing.cohere_server",
    "alambic.testing.gemini_server",
    "alambic.testing.ollama_server",
    "alambic.testing.hub_server",
    "alambic.testing.wire_server",
    "alambic.testing.processes",
    "alambic.testing.tiny_model",
    "alambic.testing.tiny_gguf",
]


def test_no_testing_module_imports_pytest_at_import_time() -> None:
    code = (
        "import sys\n"
        f"for name in {MODULES!r}:\n"
        "    __import__(name)\n"
        "print('pytest' in sys.modules, '_pytest' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False False"


def test_the_openai_server_keeps_its_import_path() -> None:
    from alambic.testing.openai_server import OpenAITestServer, ServerConfig

    with OpenAITestServer(ServerConfig(latency_s=0.0)) as server:
        assert server.base_url.startswith("http://127.0.0.1:")


def test_no_testing_module_is_over_600_lines() -> None:
    root = Path(alambic.testing.__file__).parent
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    assert max(sizes.values()) <= 600, sizes
