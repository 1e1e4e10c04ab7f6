"""Structured output: replies that must be JSON matching a schema.

A schema comes from the LLM's ``structured_output`` setting or, per row, from
``Task.format_input`` returning ``(messages, {"schema": ...})``. It may be a JSON schema
(``dict``) or a pydantic model class. What happens to a request that has one:

1. If the backend can constrain decoding natively (OpenAI ``response_format`` json_schema,
   Anthropic tool use, vLLM guided decoding, llama.cpp grammars...), it receives the request
   as ``(messages, {"name": ..., "schema": <JSON schema>})`` and does so; otherwise the schema
   is written into the prompt (:func:`with_instructions`) and the reply parsed.
2. Every reply is validated: the JSON is taken out of prose or a markdown fence
   (:func:`extract_json`) and checked against the schema (pydantic for a model class;
   ``jsonschema`` when installed, else a built-in validator covering the common keywords).
3. A reply that does not validate is asked again, with the schema in the prompt, at most
   ``structured_output_retries`` times; one that never validates becomes a failed generation
   of kind ``structured_output`` carrying the validation error.

The text kept for a valid reply is the JSON alone (``json.dumps`` of the parsed value), so a
task's ``format_output`` can ``json.loads`` it whatever prose the model wrapped around it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from alambic.errors import AlambicUserError
from alambic.llms.typing import ChatType

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class StructuredSpec:
    """A resolved structured-output request: the JSON schema, and the pydantic model if any."""

    schema: dict[str, Any]
    name: str = "output"
    model: type[BaseModel] | None = None

    def wire(self) -> dict[str, Any]:
        """What a backend receives as the second item of its input tuple."""
        return {"name": self.name, "schema": self.schema}


def resolve_spec(spec: Any) -> StructuredSpec:
    """A :class:`StructuredSpec` from a pydantic model class, a JSON schema, or
    ``{"schema": <either>, "name"?: str, "format"?: "json"}``."""
    if isinstance(spec, StructuredSpec):
        return spec
    name = "output"
    if (
        isinstance(spec, dict)
        and "schema" in spec
        and ("format" in spec or "name" in spec or not _looks_like_schema(spec))
    ):
        name = str(spec.get("name") or name)
        spec = spec["schema"]
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return StructuredSpec(
            schema=spec.model_json_schema(), name=_safe_name(spec.__name__), model=spec
        )
    if isinstance(spec, dict):
        return StructuredSpec(schema=spec, name=_safe_name(str(spec.get("title") or name)))
    raise AlambicUserError(
        f"structured output must be a JSON schema (dict), a pydantic model class, or "
        f'{{"schema": <one of those>}}; got {type(spec).__name__}: {spec!r:.200}'
    )


def _looks_like_schema(spec: dict[str, Any]) -> bool:
    return "type" in spec or "properties" in spec or "$ref" in spec


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]
    return cleaned or "output"


def extract_json(text: str) -> Any:
    """The JSON value in a reply: the whole text, a markdown-fenced block, or the first
    balanced ``{...}``/``[...]`` in prose. Raises ``ValueError`` when there is none.

    Control characters inside strings (a raw tab or newline, which strict JSON forbids) are
    accepted: grammar-constrained engines such as llama.cpp let models write them."""
    stripped = text.strip()
    try:
        return json.loads(stripped, strict=False)
    except ValueError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block.strip(), strict=False)
        except ValueError:
            continue
    decoder = json.JSONDecoder(strict=False)
    for i, char in enumerate(text):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(text, i)
            except ValueError:
                continue
            return value
    raise ValueError(f"the reply contains no JSON value: {text[:200]!r}")


def validate_reply(text: str | None, spec: StructuredSpec) -> tuple[str | None, str | None]:
    """``(json_text, None)`` for a reply that matches ``spec``, else ``(None, reason)``."""
    if text is None:
        return None, "the LLM returned no text"
    try:
        value = extract_json(text)
    except ValueError as exc:
        return None, str(exc)
    if spec.model is not None:
        try:
            spec.model.model_validate(value)
        except ValidationError as exc:
            return None, f"the reply does not match {spec.model.__name__}: {exc}"
    else:
        problem = schema_error(value, spec.schema)
        if problem is not None:
            return None, f"the reply does not match the schema: {problem}"
    return json.dumps(value, ensure_ascii=False), None


def schema_error(value: Any, schema: dict[str, Any]) -> str | None:
    """Why ``value`` does not match ``schema`` (``None`` when it does)."""
    try:
        import jsonschema  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return schema_problem(value, schema)
    validator_cls = jsonschema.validators.validator_for(schema)
    error = jsonschema.exceptions.best_match(validator_cls(schema).iter_errors(value))
    if error is None:
        return None
    where = "$" + "".join(f"[{p!r}]" for p in error.absolute_path)
    return f"{where}: {error.message}"


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}

#: Wording of :func:`schema_problem`'s reasons: the LLM's re-ask prompts and rows read
#: ``"$['age']: expected integer, got str 'x'"``; StructuredGeneration's rows read
#: ``"$.age should be integer, got str"`` (the wording its users and tests know).
_WORDING: dict[str, dict[str, str]] = {
    "llm": {
        "type": "{where}: expected {kinds}, got {got} {value!r:.80}",
        "enum": "{where}: {value!r:.80} is not one of {allowed!r}",
        "const": "{where}: expected {allowed!r}, got {value!r:.80}",
        "required": "{where}: missing required property {missing[0]!r}",
        "additional": "{where}: unexpected property {extra[0]!r}",
        "min_items": "{where}: fewer than {limit} items",
        "max_items": "{where}: more than {limit} items",
        "any_of": "{where}: {value!r:.80} matches none of the {key} alternatives",
    },
    "task": {
        "type": "{where} should be {names}, got {got}",
        "enum": "{where} is {value!r}, not one of {allowed}",
        "const": "{where} is {value!r}, not {allowed!r}",
        "required": "{where} lacks the required key(s) {missing}",
        "additional": "{where} has keys not in the schema: {extra}",
        "min_items": "{where} has {count} items, fewer than {limit}",
        "max_items": "{where} has {count} items, more than {limit}",
        "any_of": "{where} matches none of the {key} alternatives",
    },
}


def schema_problem(
    value: Any, schema: Any, root: Any = None, where: str = "$", *, wording: str = "llm"
) -> str | None:
    """The first way ``value`` breaks ``schema``, or ``None``: the one JSON-schema check of
    alambic (``$ref``, ``anyOf``/``oneOf``/``allOf``, ``type``, ``enum``, ``const``,
    ``required``, ``properties``, ``additionalProperties: false``, ``items``, item counts,
    bounds and lengths). ``wording`` picks how the reason reads (see :data:`_WORDING`)."""
    if not isinstance(schema, dict):
        return None
    root = schema if root is None else root
    say = _WORDING[wording]

    def child(key: str | int) -> str:
        if isinstance(key, int):
            return f"{where}[{key}]"
        return f"{where}.{key}" if wording == "task" else f"{where}[{key!r}]"

    if "$ref" in schema:
        node: Any = root
        for part in str(schema["$ref"]).lstrip("#").split("/"):
            if part:
                node = node.get(part, {}) if isinstance(node, dict) else {}
        return schema_problem(value, node, root, where, wording=wording)
    for key in ("anyOf", "oneOf"):
        if key in schema and all(
            schema_problem(value, s, root, where, wording=wording) for s in schema[key]
        ):
            return say["any_of"].format(where=where, value=value, key=key)
    for sub in schema.get("allOf", []):
        problem = schema_problem(value, sub, root, where, wording=wording)
        if problem:
            return problem
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        ok = any(
            isinstance(value, _TYPES.get(k, object))
            and not (isinstance(value, bool) and k in ("integer", "number"))
            for k in names
        )
        if isinstance(value, float) and "integer" in names and value.is_integer():
            ok = True
        if not ok:
            return say["type"].format(
                where=where,
                kinds=kinds,
                names=" or ".join(names),
                got=type(value).__name__,
                value=value,
            )
    if "enum" in schema and value not in schema["enum"]:
        return say["enum"].format(where=where, value=value, allowed=schema["enum"])
    if "const" in schema and value != schema["const"]:
        return say["const"].format(where=where, value=value, allowed=schema["const"])
    if isinstance(value, dict):
        missing = [key for key in schema.get("required", []) if key not in value]
        if missing:
            return say["required"].format(where=where, missing=missing)
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = sorted(k for k in value if k not in props)
            if extra:
                return say["additional"].format(where=where, extra=extra)
        for key, item in value.items():
            if key in props:
                problem = schema_problem(item, props[key], root, child(key), wording=wording)
                if problem:
                    return problem
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return say["min_items"].format(where=where, count=len(value), limit=schema["minItems"])
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return say["max_items"].format(where=where, count=len(value), limit=schema["maxItems"])
        for i, item in enumerate(value):
            problem = schema_problem(item, schema.get("items"), root, child(i), wording=wording)
            if problem:
                return problem
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where}: {value} is below the minimum {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where}: {value} is above the maximum {schema['maximum']}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{where}: shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where}: longer than {schema['maxLength']} characters"
    return None


def _minimal_error(value: Any, schema: Any, root: dict[str, Any], where: str) -> str | None:
    """:func:`schema_problem` in the LLM's wording (kept for existing callers)."""
    return schema_problem(value, schema, root, where)


def instructions(spec: StructuredSpec, previous_error: str | None = None) -> str:
    """The text appended to the prompt when the backend cannot enforce the schema itself."""
    text = (
        "\n\nAnswer with a single JSON value that matches this JSON schema, and nothing else "
        "(no prose, no markdown fence):\n" + json.dumps(spec.schema, ensure_ascii=False)
    )
    if previous_error:
        text += f"\nYour previous answer was rejected: {previous_error[:500]}"
    return text


def with_instructions(
    messages: ChatType, spec: StructuredSpec, previous_error: str | None = None
) -> ChatType:
    """A copy of ``messages`` whose last user message asks for JSON matching ``spec``."""
    out: ChatType = [dict(m) for m in messages]  # type: ignore[misc]
    extra = instructions(spec, previous_error)
    for message in reversed(out):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] = message["content"] + extra
            return out
    out.append({"role": "user", "content": extra.lstrip()})
    return out


__all__ = [
    "StructuredSpec",
    "extract_json",
    "instructions",
    "resolve_spec",
    "schema_error",
    "schema_problem",
    "validate_reply",
    "with_instructions",
]
