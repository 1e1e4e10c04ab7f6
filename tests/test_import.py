"""`import alambic` stays light: no heavy package is imported, and it is fast."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "openai", "datasets", "pyarrow", "anthropic", "ray"]


def _probe(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_alambic_pulls_no_heavy_package() -> None:
    code = (
        "import sys, json, alambic, alambic.llms, alambic.steps, alambic.steps.tasks, alambic.pipeline;"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_import_alambic_is_fast() -> None:
    code = (
        "import time, json; t = time.perf_counter(); import alambic;"
        "print(json.dumps({'s': time.perf_counter() - t}))"
    )
    best = min(float(_probe(code)["s"]) for _ in range(3))  # type: ignore[arg-type]
    assert best < 0.3


def test_no_module_of_alambic_is_over_600_lines() -> None:
    """Modules stay readable: split a module before it passes 600 lines."""
    from pathlib import Path

    import alambic

    root = Path(alambic.__file__).parent
    sizes = {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for path in root.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 600} == {}
