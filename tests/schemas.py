"""Validate real responses against the published schemas in tests/specs/ (see its README).

OpenAPI 3.0 idioms become JSON Schema first: `nullable: true` is `anyOf [schema, null]`, and a
boolean `exclusiveMinimum` is the numeric one.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema

SPECS = Path(__file__).parent / "specs"


def validate(spec: str, name: str, instance) -> None:
    """Raise jsonschema.ValidationError unless `instance` is a valid `name` of `spec`
    ("openai-chat", "openai-completions" or "lorax")."""
    _validator(spec, name).validate(instance)


@functools.cache
def _validator(spec: str, name: str) -> jsonschema.Draft202012Validator:
    document = _json_schema(json.loads((SPECS / f"{spec}.json").read_text()))
    return jsonschema.Draft202012Validator({**document, "$ref": f"#/components/schemas/{name}"})


def _json_schema(node):
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _json_schema(value) for key, value in node.items()}
    if node.get("exclusiveMinimum") is True:
        node["exclusiveMinimum"] = node.pop("minimum")
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node
