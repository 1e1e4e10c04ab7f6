"""``alambic info PIPELINE``: what a pipeline does, without running it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel

from alambic.cli._common import load_pipeline

if TYPE_CHECKING:
    from alambic.pipeline.base import Pipeline

_LLM_LIMITS = ("max_concurrency", "rpm", "tpm", "timeout", "max_retries", "batch_size")


def register(app: typer.Typer) -> None:
    app.command(
        "info",
        help="Show a pipeline: its DAG as text and as mermaid, each step's input and output "
        "columns, runtime parameters (defaults and docs), and LLMs (model and limits).",
        no_args_is_help=True,
    )(info_command)


def info_command(
    pipeline: Annotated[
        str, typer.Argument(help="FILE.py[:NAME], FILE.yaml, FILE.json or a Distiset folder.")
    ],
    format: Annotated[
        str,
        typer.Option("--format", "-f", help="text (default), mermaid (only the graph) or json."),
    ] = "text",
    allow_module: Annotated[
        list[str] | None,
        typer.Option("--allow-module", help="Let a YAML/JSON pipeline import this module."),
    ] = None,
) -> int:
    pipe = load_pipeline(pipeline, allow_modules=list(allow_module or []))
    if format == "mermaid":
        print(mermaid(pipe))
    elif format == "json":
        print(json.dumps(describe(pipe), indent=2, default=str))
    elif format == "text":
        print(text(pipe))
    else:
        from alambic.cli._common import CLIError

        raise CLIError(f"--format {format!r} is not one of text, mermaid, json.")
    return 0


def _params(model: BaseModel, prefix: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    fields = type(model).model_fields
    for name, required in model.runtime_parameters_names.items():  # type: ignore[attr-defined]
        value = getattr(model, name)
        if isinstance(required, dict):
            out.extend(_params(value, f"{prefix}{name}."))
            continue
        info = fields[name]
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        out.append(
            {
                "name": prefix + name,
                "value": value,
                "default": default,
                "required": bool(required),
                "doc": info.description or "",
            }
        )
    return out


def describe(pipeline: Pipeline) -> dict[str, Any]:
    dag = pipeline.dag
    steps = []
    for name in dag.topological_order():
        step = dag.steps[name]
        llm = getattr(step, "llm", None)
        entry: dict[str, Any] = {
            "name": name,
            "class": f"{type(step).__module__}.{type(step).__qualname__}",
            "predecessors": list(dag.predecessors.get(name, [])),
            "successors": list(dag.successors.get(name, [])),
            "routing": dag.routing[name].description if name in dag.routing else None,
            "inputs": _columns(step, "inputs"),
            "outputs": _columns(step, "outputs"),
            "runtime_parameters": _params(step),
        }
        if llm is not None:
            entry["llm"] = {
                "class": type(llm).__name__,
                "model": _model_name(llm),
                "limits": {k: getattr(llm, k) for k in _LLM_LIMITS if hasattr(llm, k)},
                "generation_kwargs": getattr(llm, "generation_kwargs", None),
            }
        steps.append(entry)
    return {
        "name": pipeline.name,
        "description": pipeline.description,
        "signature": pipeline.signature(),
        "steps": steps,
    }


def _model_name(llm: Any) -> str:
    try:
        return str(llm.model_name)
    except Exception as exc:  # a model name that needs load(): say so instead of failing
        return f"(known after load: {type(exc).__name__})"


def _columns(step: Any, which: str) -> dict[str, bool] | str:
    try:
        result: dict[str, bool] = (
            step.mapped_inputs() if which == "inputs" else step.mapped_outputs()
        )
    except Exception as exc:  # columns that depend on load() (e.g. a model's labels)
        return f"(known after load: {type(exc).__name__})"
    return result


def _node_id(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def mermaid(pipeline: Pipeline) -> str:
    dag = pipeline.dag
    lines = ["graph TD"]
    for name, step in dag.steps.items():
        lines.append(f'    {_node_id(name)}["{name}<br/>{type(step).__name__}"]')
    for name, succs in dag.successors.items():
        arrow = f"-- {dag.routing[name].description} -->" if name in dag.routing else "-->"
        for succ in succs:
            lines.append(f"    {_node_id(name)} {arrow} {_node_id(succ)}")
    return "\n".join(lines)


def _cols(value: dict[str, bool] | str) -> str:
    if isinstance(value, str):
        return value
    return ", ".join(k if req else f"{k} (optional)" for k, req in value.items()) or "-"


def text(pipeline: Pipeline) -> str:
    data = describe(pipeline)
    out = [f"pipeline {data['name']}  (definition {data['signature'][:12]})"]
    if data["description"]:
        out.append(f"  {data['description']}")
    out += ["", "DAG:"]
    for step in data["steps"]:
        succs = ", ".join(step["successors"])
        route = f" [{step['routing']}]" if step["routing"] else ""
        out.append(f"  {step['name']} -> {succs}{route}" if succs else f"  {step['name']} (leaf)")
    out += ["", "mermaid:", mermaid(pipeline), ""]
    for step in data["steps"]:
        out.append(f"step {step['name']}  ({step['class']})")
        out.append(f"  inputs:  {_cols(step['inputs'])}")
        out.append(f"  outputs: {_cols(step['outputs'])}")
        if "llm" in step:
            llm = step["llm"]
            limits = ", ".join(f"{k}={v}" for k, v in llm["limits"].items())
            out.append(f"  llm:     {llm['class']} model={llm['model']} {limits}".rstrip())
            if llm["generation_kwargs"]:
                out.append(f"           generation_kwargs={llm['generation_kwargs']}")
        if step["runtime_parameters"]:
            out.append("  runtime parameters (--param " + step["name"] + ".NAME=VALUE):")
            for p in step["runtime_parameters"]:
                flag = " required" if p["required"] else ""
                current = "" if p["value"] == p["default"] else f" (now {p['value']!r})"
                doc = f"  {p['doc']}" if p["doc"] else ""
                out.append(f"    {p['name']} = {p['default']!r}{current}{flag}{doc}")
        out.append("")
    return "\n".join(out).rstrip()
