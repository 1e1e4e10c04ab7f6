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
        return _minimal_error(value, schema, schema, "$")
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


def _minimal_error(value: Any, schema: Any, root: dict[str, Any], where: str) -> str | None:
    """The common JSON-schema keywords, for when ``jsonschema`` is not installed."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        node: Any = root
        for part in str(schema["$ref"]).lstrip("#").split("/"):
            if part:
                node = node.get(part, {}) if isinstance(node, dict) else {}
        return _minimal_error(value, node, root, where)
    for key in ("anyOf", "oneOf"):
        if key in schema and all(_minimal_error(value, s, root, where) for s in schema[key]):
            return f"{where}: {value!r:.80} matches none of the {key} alternatives"
    for sub in schema.get("allOf", []):
        problem = _minimal_error(value, sub, root, where)
        if problem:
            return problem
    if "const" in schema and value != schema["const"]:
        return f"{where}: expected {schema['const']!r}, got {value!r:.80}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {value!r:.80} is not one of {schema['enum']!r}"
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
            return f"{where}: expected {kinds}, got {type(value).__name__} {value!r:.80}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"{where}: missing required property {key!r}"
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                problem = _minimal_error(item, props[key], root, f"{where}[{key!r}]")
                if problem:
                    return problem
            elif schema.get("additionalProperties") is False:
                return f"{where}: unexpected property {key!r}"
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"{where}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where}: more than {schema['maxItems']} items"
        for i, item in enumerate(value):
            problem = _minimal_error(item, schema.get("items"), root, f"{where}[{i}]")
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
    "validate_reply",
    "with_instructions",
]
