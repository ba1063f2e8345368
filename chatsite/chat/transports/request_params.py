"""The three APIs' sampling and structured-output parameters, in each API's own shape, mapped
to `GenerationParams` (docs/ARCHITECTURE.md, "HTTP APIs": Structured output and sampling).

OpenAI: `response_format` {"type": "json_object"} or {"type": "json_schema", "json_schema":
{"name", "schema", "strict"}}, `logit_bias` {token id: -100..100}, penalties -2..2, vLLM's
`top_k` and `repetition_penalty` extensions. LoRAX: `response_format` {"type": "json_object",
"schema": …}, `top_k`, `repetition_penalty`. The native API takes GenerationParams itself.
A schema is compiled here, once, so that one llguidance cannot enforce is refused up front
with its reason (`invalid_schema`: 400 OpenAI and native, 422 LoRAX).
"""

from __future__ import annotations

import re

from pydantic import Field, ValidationError

from chatsite.chat.streams.protocol import GenerationParams, ResponseFormat
from chatsite.errors import ChatError, field_error
from inference.errors import InferenceError
from inference.grammar import json_object_grammar, json_schema_grammar

SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOP_LOGPROBS = 20  # OpenAI's bound; inference.logprobs keeps the same


class ApiParams(GenerationParams):
    """GenerationParams plus what only the OpenAI and LoRAX APIs can report: token details
    (OpenAI `logprobs`/`top_logprobs`, LoRAX `details`, `return_k_alternatives` and
    `decoder_input_details`). The socket and the native API have no place to show them."""

    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=MAX_TOP_LOGPROBS)
    prompt_logprobs: bool = False


def grammar_for(response_format: ResponseFormat | None) -> str | None:
    """The engine grammar for a response format; None for prose."""
    if response_format is None or response_format.type == "text":
        return None
    try:
        if response_format.schema_ is None:
            return json_object_grammar()
        return json_schema_grammar(response_format.schema_)
    except InferenceError as error:
        raise field_error("response_format", error.message, error.code) from None


def openai_response_format(value: dict | None) -> ResponseFormat | None:
    """OpenAI's `response_format` as ours; ChatError naming what is wrong."""
    if value is None:
        return None
    kind = value.get("type")
    if kind in ("text", "json_object"):
        _only(value, {"type"}, "response_format")
        return ResponseFormat(type=kind)
    if kind != "json_schema":
        raise _bad("response_format.type", "must be one of text, json_object, json_schema")
    _only(value, {"type", "json_schema"}, "response_format")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise _bad("response_format.json_schema", "must be an object with a name and a schema")
    _only(spec, {"name", "schema", "strict", "description"}, "response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or not SCHEMA_NAME.match(name):
        raise _bad(
            "response_format.json_schema.name",
            "must be 1 to 64 letters, digits, underscores or dashes",
        )
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise _bad("response_format.json_schema.schema", "must be a JSON schema object")
    if not isinstance(spec.get("strict", False), (bool, type(None))):
        raise _bad("response_format.json_schema.strict", "must be true or false")
    # strict or not, the grammar enforces the schema: "best effort" is met by always.
    return ResponseFormat(type="json_schema", schema=schema)


def lorax_response_format(value: dict | None) -> ResponseFormat | None:
    """LoRAX's `response_format` ({"type": "json_object", "schema": …}) as ours."""
    if value is None:
        return None
    _only(value, {"type", "schema"}, "parameters.response_format")
    if value.get("type") != "json_object":
        raise _bad("parameters.response_format.type", "must be json_object")
    schema = value.get("schema")
    if schema is None:
        return ResponseFormat(type="json_object")
    if not isinstance(schema, dict):
        raise _bad("parameters.response_format.schema", "must be a JSON schema object")
    return ResponseFormat(type="json_schema", schema=schema)


def native_params(values: dict, prefix: str = "") -> GenerationParams:
    """The native API's `parameters`, already checked field by field, as GenerationParams."""
    try:
        return GenerationParams(**values)
    except ValidationError as exc:  # what the serializer leaves: logit_bias keys, response_format
        raise params_error(exc, prefix) from None


def params_error(exc: ValidationError, prefix: str = "") -> ChatError:
    """GenerationParams' own refusal (stop sequences, logit bias), naming the field."""
    err = exc.errors()[0]
    where = prefix + ".".join(str(part) for part in err["loc"] if part != "[key]")
    return field_error(where, f"{err['msg']}.")


# OpenAI request fields Patchbay does not implement: refused, never silently ignored.
OPENAI_UNSUPPORTED = {
    # OpenAI's legacy function calling: `tools` is the way (chat/transports/openai_tools.py).
    "functions": None, "function_call": None,
    "audio": None, "modalities": (None, ["text"]), "prediction": None,
    "web_search_options": None, "reasoning_effort": None, "best_of": (None, 1),
    "echo": (None, False), "suffix": None, "guided_json": None, "guided_regex": None,
    "guided_choice": None, "guided_grammar": None, "min_p": (None, 0, 0.0),
    "min_tokens": (None, 0), "use_beam_search": (None, False), "length_penalty": (None, 1, 1.0),
}


def refuse_unsupported(extra: dict) -> None:
    """A ChatError naming the first field of `extra` that Patchbay would have to ignore."""
    for name, harmless in OPENAI_UNSUPPORTED.items():
        if name not in extra:
            continue
        allowed = harmless if isinstance(harmless, tuple) else (harmless,)
        if not any(extra[name] == value and type(extra[name]) is type(value) for value in allowed):
            problem = f"Patchbay does not support {name} yet; leave it out."
            raise field_error(name, problem, "unsupported_parameter")


def _only(value: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _bad(f"{where}.{unknown[0]}", "is not a field Patchbay knows; leave it out")


def _bad(field: str, problem: str) -> ChatError:
    return field_error(field, f"{problem}.")
