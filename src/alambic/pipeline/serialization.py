"""Pipelines as files: to and from plain data, YAML and JSON.

    pipeline.save("pipeline.yaml")                       # or format="json"
    same = Pipeline.from_yaml("pipeline.yaml")           # same signature: resumes the same run
    custom = Pipeline.from_yaml(path, allow_modules=["my_steps"])

What a file holds: the pipeline's name and description, each step with its class (import
path) and every field (runtime parameters included), its LLM with its settings, the
connections and routing functions. Secrets are never written: an API key becomes the name of
the environment variable it is read from (``{"from_env": "OPENAI_API_KEY"}``), and the loaded
LLM reads that variable when it starts.

A file is code: loading it imports the classes it names. It may come from the Hub or any URL,
so loading imports only alambic's own modules unless the user allows others by name
(``allow_modules=["my_steps"]``, ``alambic run --allow-module my_steps``); a module that is not
allowed, or cannot be imported, is an error that names it and says what to do.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel

from alambic.errors import AlambicUserError
from alambic.utils.serialization import SECRET_MASK

if TYPE_CHECKING:
    from alambic.pipeline.base import Pipeline
    from alambic.steps.routing import RoutingBatchFunction

FORMAT_VERSION = 1
"""Version of the file layout below (``format_version``); bumped on incompatible changes."""

TRUSTED_PACKAGE = "alambic"


class PipelineLoadError(AlambicUserError):
    """A pipeline file cannot be loaded: bad layout, a module not allowed or not importable."""


# -- writing -------------------------------------------------------------------------------


def _secrets_to_env(obj: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    """Replace masked secrets of ``obj`` (and of the components it holds) by env var names."""
    for name, value in list(data.items()):
        attr = getattr(obj, name, None)
        if value == SECRET_MASK:
            env = getattr(obj, f"{name}_env_var", None)
            data[name] = {"from_env": env} if env else None
        elif isinstance(value, dict) and isinstance(attr, BaseModel):
            data[name] = _secrets_to_env(attr, value)
    return data


def step_to_dict(step: Any) -> dict[str, Any]:
    """A step's class and fields (its LLM included), secrets replaced by env var names."""
    data: dict[str, Any] = _secrets_to_env(step, step.dump())
    return data


def routing_to_dict(routing: RoutingBatchFunction) -> dict[str, Any]:
    origin = routing.origin
    if origin is None:
        return {"description": routing.description}
    function, kwargs = origin
    out: dict[str, Any] = {"function": function, "description": routing.description}
    if kwargs is not None:
        out["kwargs"] = dict(kwargs)
    return out


def pipeline_to_dict(pipeline: Pipeline) -> dict[str, Any]:
    """The pipeline as plain data (what ``to_yaml``/``to_json`` write)."""
    steps = []
    dag = pipeline.dag
    for name, step in dag.steps.items():
        routing = dag.routing.get(name)
        steps.append(
            {
                "name": name,
                "step": step_to_dict(step),
                "connections": list(dag.successors.get(name, [])),
                "routing": routing_to_dict(routing) if routing is not None else None,
            }
        )
    from alambic import __version__

    body: dict[str, Any] = {"name": pipeline.name, "description": pipeline.description}
    requirements = getattr(pipeline, "requirements", None)
    if requirements:
        body["requirements"] = list(requirements)
    body["enable_metadata"] = pipeline.enable_metadata
    body["steps"] = steps
    return {"alambic_version": __version__, "format_version": FORMAT_VERSION, "pipeline": body}


def to_yaml(pipeline: Pipeline) -> str:
    text: str = yaml.safe_dump(pipeline_to_dict(pipeline), sort_keys=False, allow_unicode=True)
    return text


def to_json(pipeline: Pipeline) -> str:
    return json.dumps(pipeline_to_dict(pipeline), indent=2, ensure_ascii=False)


def save(
    pipeline: Pipeline, path: str | Path, format: Literal["yaml", "json"] | None = None
) -> Path:
    """Write ``pipeline`` to ``path``; the format comes from ``format`` or the file's suffix."""
    path = Path(path)
    fmt = format or ("json" if path.suffix.lower() == ".json" else "yaml")
    if fmt not in ("yaml", "json"):
        raise ValueError(f"format={fmt!r} is not one of 'yaml', 'json'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(pipeline) if fmt == "json" else to_yaml(pipeline), encoding="utf-8")
    return path


# -- reading -------------------------------------------------------------------------------


class _Importer:
    """Imports what a file names, only from alambic and the modules the user allowed."""

    def __init__(self, allow_modules: Iterable[str], source: str) -> None:
        self.allowed = (TRUSTED_PACKAGE, *allow_modules)
        self.source = source

    def _is_allowed(self, module: str) -> bool:
        return any(module == a or module.startswith(a + ".") for a in self.allowed)

    def resolve(self, module: str, qualname: str, what: str) -> Any:
        if not self._is_allowed(module):
            raise PipelineLoadError(
                f"{self.source} uses {what} {module}.{qualname}, from module {module!r}, which "
                f"is not part of alambic. Loading it would run that module's code, so it is "
                f"not imported by default. If you trust it, allow it: "
                f"allow_modules=[{module.split('.')[0]!r}] (command line: --allow-module "
                f"{module.split('.')[0]})."
            )
        try:
            obj: Any = importlib.import_module(module)
        except ImportError as exc:
            raise PipelineLoadError(
                f"{self.source} uses {what} {module}.{qualname}, but module {module!r} cannot "
                f"be imported ({exc}). Install the package that provides it, or put the folder "
                f"holding {module.replace('.', '/')}.py on PYTHONPATH, then load again."
            ) from exc
        for part in qualname.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise PipelineLoadError(
                    f"{self.source} uses {what} {module}.{qualname}, but module {module!r} has "
                    f"no {qualname!r} (was it renamed?)."
                ) from None
            if inspect.ismodule(obj):  # e.g. alambic.x.os.system: not alambic's own code
                break
        defined_in = getattr(obj, "__module__", None)
        if inspect.ismodule(obj) or not (
            isinstance(defined_in, str) and self._is_allowed(defined_in)
        ):
            raise PipelineLoadError(
                f"{self.source} uses {what} {module}.{qualname}, which is not defined in an "
                f"allowed module (it comes from {defined_in or 'a module'}); a pipeline file "
                "may only name classes and functions defined in alambic or in allowed modules."
            )
        return obj

    def value(self, value: Any) -> Any:
        if isinstance(value, dict):
            if "type_info" in value:
                return self.component(value)
            if set(value) == {"from_env"}:
                return _FROM_ENV
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def component(self, data: Mapping[str, Any]) -> Any:
        info = data["type_info"]
        if not isinstance(info, dict) or not {"module", "name"} <= set(info):
            raise PipelineLoadError(
                f"{self.source}: type_info {info!r} needs 'module' and 'name' keys."
            )
        cls = self.resolve(str(info["module"]), str(info["name"]), "the class")
        if not isinstance(cls, type):
            raise PipelineLoadError(
                f"{self.source}: type_info {info['module']}.{info['name']} is not a class."
            )
        if len(data) == 1:
            return cls
        if not issubclass(cls, BaseModel):
            raise PipelineLoadError(
                f"{self.source}: {info['module']}.{info['name']} is not an alambic component "
                "(a pydantic model such as a step or an LLM), so it cannot be built from settings."
            )
        kwargs = {}
        for key, raw in data.items():
            if key == "type_info" or raw == SECRET_MASK:
                continue
            loaded = self.value(raw)
            if loaded is _FROM_ENV:
                continue  # the component reads its environment variable itself
            kwargs[key] = loaded
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as exc:
            raise PipelineLoadError(
                f"{self.source}: cannot rebuild {info['module']}.{info['name']} from its "
                f"settings: {exc}"
            ) from exc


_FROM_ENV = object()


def _routing_from_dict(data: Any, importer: _Importer, step: str) -> RoutingBatchFunction:
    from alambic.steps.routing import RoutingBatchFunction

    if not isinstance(data, dict) or "function" not in data:
        description = data.get("description") if isinstance(data, dict) else data
        raise PipelineLoadError(
            f"{importer.source}: step {step!r} routes its batches with {description!r}, which "
            "was saved without an import path (a function defined inside another function or "
            "a lambda). Define it at module level with @routing_batch_function and save again."
        )
    module, _, qualname = str(data["function"]).rpartition(".")
    target = importer.resolve(module, qualname, "the routing function")
    if isinstance(target, RoutingBatchFunction):
        return target.copy()
    if not inspect.isfunction(target):
        raise PipelineLoadError(f"{importer.source}: routing {data['function']} is not a function.")
    if "kwargs" not in data:
        return RoutingBatchFunction(target, origin=(str(data["function"]), None))
    result = target(**(data["kwargs"] or {}))
    if not isinstance(result, RoutingBatchFunction):
        raise PipelineLoadError(
            f"{importer.source}: {data['function']} returned {type(result).__name__}, not a "
            "routing function."
        )
    return result


def pipeline_from_dict(
    data: Mapping[str, Any],
    *,
    allow_modules: Iterable[str] = (),
    source: str = "the pipeline definition",
) -> Pipeline:
    """Rebuild a pipeline from what :func:`pipeline_to_dict` wrote."""
    from alambic.pipeline.base import Pipeline

    importer = _Importer(allow_modules, source)
    body = data.get("pipeline") if isinstance(data, Mapping) else None
    if not isinstance(body, Mapping) or not isinstance(body.get("steps"), list):
        raise PipelineLoadError(
            f"{source} is not an alambic pipeline: expected a mapping with a 'pipeline' key "
            "holding 'name' and 'steps' (as written by Pipeline.save / to_yaml)."
        )
    version = data.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PipelineLoadError(
            f"{source} has format_version {version!r}; this alambic reads up to "
            f"{FORMAT_VERSION}. Upgrade alambic to load it."
        )
    kwargs: dict[str, Any] = {"name": body["name"], "description": body.get("description")}
    if "enable_metadata" in body:
        kwargs["enable_metadata"] = bool(body["enable_metadata"])
    if body.get("requirements"):
        kwargs["requirements"] = list(body["requirements"])
    pipeline = Pipeline(**kwargs)
    entries = body["steps"]
    with pipeline:
        for entry in entries:
            step_data = entry.get("step") if isinstance(entry, Mapping) else None
            if not isinstance(step_data, Mapping) or "type_info" not in step_data:
                raise PipelineLoadError(
                    f"{source}: step entry {entry!r:.200} has no 'step' with a 'type_info'."
                )
            step_data = dict(step_data)
            step_data["name"] = entry.get("name", step_data.get("name"))
            importer.component(step_data)
    for entry in entries:
        name = entry["name"]
        targets = [pipeline.get_step(t) for t in entry.get("connections") or []]
        routing = entry.get("routing")
        if not targets:
            continue
        step = pipeline.get_step(name)
        if routing:
            step.connect(
                *targets, routing_batch_function=_routing_from_dict(routing, importer, name)
            )
        else:
            step.connect(*targets)
    return pipeline


def _parse_text(text: str, fmt: str, source: str) -> Any:
    try:
        return json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise PipelineLoadError(f"{source} is not valid {fmt.upper()}: {exc}") from exc


def _text_or_path(value: str | Path) -> tuple[str, str]:
    """(text, source) from a path or the text itself."""
    if isinstance(value, Path) or ("\n" not in value and len(value) < 4096):
        path = Path(value)
        if path.is_dir() and (path / "pipeline.yaml").is_file():
            path = path / "pipeline.yaml"
        if path.is_file():
            return path.read_text(encoding="utf-8"), str(path)
        if isinstance(value, Path) or path.suffix.lower() in (".yaml", ".yml", ".json"):
            raise PipelineLoadError(f"No pipeline file at {path} (it does not exist).")
    return str(value), "the pipeline text"


def from_yaml(value: str | Path, *, allow_modules: Iterable[str] = ()) -> Pipeline:
    """A pipeline from a YAML file (or a Distiset folder holding ``pipeline.yaml``) or text."""
    text, source = _text_or_path(value)
    return pipeline_from_dict(
        _parse_text(text, "yaml", source), allow_modules=allow_modules, source=source
    )


def from_json(value: str | Path, *, allow_modules: Iterable[str] = ()) -> Pipeline:
    """A pipeline from a JSON file or text."""
    text, source = _text_or_path(value)
    return pipeline_from_dict(
        _parse_text(text, "json", source), allow_modules=allow_modules, source=source
    )


def load_file(path: str | Path, *, allow_modules: Iterable[str] = ()) -> Pipeline:
    """A pipeline from a ``.json`` file, else YAML (a Distiset folder works too)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return from_json(path, allow_modules=allow_modules)
    return from_yaml(path, allow_modules=allow_modules)


__all__ = [
    "FORMAT_VERSION",
    "PipelineLoadError",
    "from_json",
    "from_yaml",
    "load_file",
    "pipeline_from_dict",
    "pipeline_to_dict",
    "save",
    "to_json",
    "to_yaml",
]
