"""Function libraries and tool-call formats for function-calling data.

:func:`describe_functions` reads a library of Python functions (a file, or a folder of files)
*without importing it* (with :mod:`ast`): names, parameters with their annotations and
defaults, and the docstring, as tool specifications in the OpenAI ``tools`` format. Those
specs fill the ``func_name`` / ``func_desc`` / ``tools`` columns of
:class:`~alambic.steps.tasks.APIGenGenerator`, and the same library then runs the calls in
:class:`~alambic.steps.tasks.APIGenExecutionChecker`'s sandbox.

The ``*_tools`` and ``calls_to_*`` helpers turn specs and calls into the formats that the
OpenAI and Anthropic APIs and Hermes-style chat templates (``<tools>`` / ``<tool_call>``)
expect, to write training conversations in the format of the model being tuned.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
from pathlib import Path
from typing import Any

from alambic.steps.tasks.apigen_execution import parse_calls

_JSON_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
    "dict": "object",
}


def _json_type(annotation: ast.expr | None) -> str | None:
    if annotation is None:
        return None
    text = ast.unparse(annotation).replace("typing.", "")
    base = re.split(r"[\[|]", text, maxsplit=1)[0].strip().lower()
    base = {"sequence": "list", "mapping": "dict", "optional": ""}.get(base, base)
    if not base and "[" in text:
        base = re.split(r"[\[\],|]", text)[1].strip().lower()
    return _JSON_TYPES.get(base)


def _param_docs(doc: str) -> dict[str, str]:
    """``name: description`` lines of a Google-style ``Args:`` section."""
    found: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.lower() in {"args:", "arguments:", "parameters:"}:
            in_args = True
            continue
        if not in_args:
            continue
        match = re.match(r"(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)", stripped)
        if match:
            found[match.group(1)] = match.group(2).strip()
        elif not stripped or stripped.endswith(":"):
            in_args = False
    return found


def _spec(node: ast.FunctionDef) -> dict[str, Any]:
    doc = ast.get_docstring(node) or ""
    summary = doc.split("\n\n", 1)[0].strip()
    described = _param_docs(doc)
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    properties: dict[str, Any] = {}
    required: list[str] = []
    params = list(zip(positional, defaults, strict=True))
    params += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    for arg, default in params:
        if arg.arg in {"self", "cls"}:
            continue
        prop: dict[str, Any] = {}
        json_type = _json_type(arg.annotation)
        if json_type:
            prop["type"] = json_type
        if arg.arg in described:
            prop["description"] = described[arg.arg]
        if default is None:
            required.append(arg.arg)
        else:
            with contextlib.suppress(ValueError):
                prop["default"] = ast.literal_eval(default)
        properties[arg.arg] = prop
    return {
        "type": "function",
        "function": {
            "name": node.name,
            "description": summary,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def describe_functions(libpath: str | Path) -> list[dict[str, Any]]:
    """OpenAI-format tool specs of the public top-level functions in ``libpath`` (not run)."""
    path = Path(libpath)
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(
            f"no Python file at {str(libpath)!r}: give a .py file or a folder of .py files."
        )
    specs: list[dict[str, Any]] = []
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                specs.append(_spec(node))
    return specs


def function_rows(libpath: str | Path) -> list[dict[str, Any]]:
    """One row per function: ``func_name``, ``func_desc`` and ``tools`` (its spec, as JSON)."""
    return [
        {
            "func_name": spec["function"]["name"],
            "func_desc": spec["function"]["description"],
            "tools": json.dumps([spec]),
        }
        for spec in describe_functions(libpath)
    ]


def openai_tools(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Specs in the OpenAI ``tools`` format (what :func:`describe_functions` returns)."""
    return [
        s if s.get("type") == "function" else {"type": "function", "function": s} for s in specs
    ]


def anthropic_tools(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Specs in the Anthropic Messages ``tools`` format (``input_schema``)."""
    out = []
    for spec in openai_tools(specs):
        function = spec["function"]
        out.append(
            {
                "name": function["name"],
                "description": function.get("description", ""),
                "input_schema": function.get("parameters", {"type": "object", "properties": {}}),
            }
        )
    return out


def hermes_tools(specs: list[dict[str, Any]]) -> str:
    """The ``<tools>...</tools>`` block of a Hermes-style system prompt."""
    lines = "\n".join(json.dumps(spec, ensure_ascii=False) for spec in openai_tools(specs))
    return f"<tools>\n{lines}\n</tools>"


def calls_to_openai(answers: Any) -> list[dict[str, Any]]:
    """Calls as an OpenAI assistant message's ``tool_calls`` (arguments as JSON text)."""
    return [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
        }
        for i, c in enumerate(parse_calls(answers))
    ]


def calls_to_anthropic(answers: Any) -> list[dict[str, Any]]:
    """Calls as Anthropic ``tool_use`` content blocks."""
    return [
        {"type": "tool_use", "id": f"toolu_{i}", "name": c["name"], "input": c["arguments"]}
        for i, c in enumerate(parse_calls(answers))
    ]


def calls_to_hermes(answers: Any) -> str:
    """Calls as the ``<tool_call>`` blocks of a Hermes-style assistant message."""
    return "\n".join(
        "<tool_call>\n" + json.dumps(c, ensure_ascii=False) + "\n</tool_call>"
        for c in parse_calls(answers)
    )


__all__ = [
    "anthropic_tools",
    "calls_to_anthropic",
    "calls_to_hermes",
    "calls_to_openai",
    "describe_functions",
    "function_rows",
    "hermes_tools",
    "openai_tools",
]
