"""Grammars for constrained decoding: what a request's answer must follow.

See docs/ARCHITECTURE.md, "Engine" (Structured output) and "Library choices" (llguidance). A
request names its grammar as llguidance's serialised grammar text (`SamplingParams.grammar`),
made here from a JSON schema (`json_schema_grammar`) or for any JSON object
(`json_object_grammar`), and checked to compile, so callers refuse a bad schema before they
accept the request. No torch here: the web tier uses this module; the engine's side is
`inference.grammar_masks`.
"""

from __future__ import annotations

import json

from llguidance import LLMatcher

from inference.errors import InferenceError

# Compact JSON: no free whitespace, which a model could otherwise emit forever.
JSON_OPTIONS = {"whitespace_flexible": False}


def json_schema_grammar(schema: dict) -> str:
    """The grammar for JSON that validates against `schema`; InferenceError("invalid_schema")
    naming the problem when llguidance cannot compile it."""
    try:
        grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults=JSON_OPTIONS)
    except (ValueError, TypeError) as error:
        message = f"The JSON schema is not usable: {sentence(error)}"
        raise InferenceError("invalid_schema", message) from None
    problem = grammar_error(grammar)
    if problem:
        message = f"The JSON schema cannot be enforced: {sentence(problem)}"
        raise InferenceError("invalid_schema", message)
    return grammar


def json_object_grammar() -> str:
    """Any JSON object (OpenAI's `json_object` mode)."""
    return json_schema_grammar({"type": "object"})


def grammar_error(grammar: str) -> str:
    """"" when llguidance can compile the grammar, else its message (first line)."""
    message = LLMatcher.validate_grammar(grammar)
    return message.strip().splitlines()[0] if message.strip() else ""


def sentence(problem) -> str:
    text = str(problem).strip()
    return text if text.endswith(".") else text + "."
