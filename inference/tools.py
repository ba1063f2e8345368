"""Function calling as prompt text and grammar: how tools reach a model whose chat template has
no place for them, how a forced call is enforced, and how a call in an answer is recognised.

See docs/ARCHITECTURE.md, "HTTP APIs" (Tools). Neither Patchbay's default model (SmolLM2's
chat template) nor the demo model's template renders `tools`, so every model gets the same
documented fallback: the functions are described in the system prompt (`tools_prompt`), a
call is written as JSON, `{"name": …, "arguments": {…}}` (an array of them for several calls;
`calls_text`), and a function's result goes back as a user turn (`results_text`). A forced
call (`call_grammar`) is that JSON under a grammar, so its arguments always validate against
the function's parameters; otherwise `parse_calls` recognises an answer that *is* such a call.
No Django here: the OpenAI transport maps its request to these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from inference.grammar import json_schema_grammar

# OpenAI's pattern for a function name.
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MAX_NAME = 64
# The markers the fallback prompt allows around a call (Hermes and Qwen templates write them).
OPEN_TAG, CLOSE_TAG = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class Function:
    name: str
    description: str = ""
    parameters: dict | None = None  # a JSON schema of the arguments object; None: any object

    @property
    def arguments_schema(self) -> dict:
        return self.parameters if self.parameters is not None else {"type": "object"}


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict


def tools_prompt(functions: list[Function], *, several: bool = True) -> str:
    """The system-prompt text that offers `functions` to the model (`several`: calls may be
    made several at once)."""
    listed = "\n".join(
        json.dumps(
            {"name": f.name, "description": f.description, "parameters": f.arguments_schema},
            ensure_ascii=False,
        )
        for f in functions
    )
    at_once = "; to call several at once, a JSON array of such objects" if several else ""
    return (
        "You can call these functions:\n"
        f"{listed}\n"
        "To call one, answer with only a JSON object "
        '{"name": <function name>, "arguments": <its arguments as a JSON object>}'
        f"{at_once}. "
        "A function's result comes back in a message that starts with “Result of”."
    )


def calls_text(calls: list[Call]) -> str:
    """An assistant turn that made `calls`, as the fallback prompt asks calls to be written."""
    objects = [{"name": c.name, "arguments": c.arguments} for c in calls]
    return _compact(objects[0] if len(objects) == 1 else objects)


def results_text(results: list[tuple[str, str]]) -> str:
    """Function results (name, content) as the text of one user turn."""
    return "\n\n".join(f"Result of {name}:\n{content}" for name, content in results)


def call_schema(functions: list[Function], *, several: bool) -> dict:
    """The JSON schema of a call to one of `functions` (an array of calls when `several`).
    `name` comes first, so the grammar writes it before the arguments."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": f.name}, "arguments": f.arguments_schema},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for f in functions
    ]
    one = options[0] if len(options) == 1 else {"anyOf": options}
    return {"type": "array", "items": one, "minItems": 1} if several else one


def call_grammar(functions: list[Function], *, several: bool) -> str:
    """The engine grammar that forces a call (InferenceError "invalid_schema" when a
    function's parameters cannot be enforced)."""
    return json_schema_grammar(call_schema(functions, several=several))


def parse_calls(text: str, functions: list[Function]) -> list[Call] | None:
    """The calls an answer makes, or None when it is not a call: the whole answer (optionally
    inside <tool_call> tags, one per call) must be a call object, or an array of them, that
    names one of `functions` and has an object of arguments. Arguments are not checked
    against the parameters here: only a forced call's grammar guarantees that."""
    names = {f.name for f in functions}
    text = text.strip()
    if text.startswith(OPEN_TAG):
        parts = [part.strip() for part in text.split(CLOSE_TAG)]
        if parts[-1]:
            return None  # text after the last call
        if not all(part.startswith(OPEN_TAG) for part in parts[:-1]):
            return None
        values = [_json(part.removeprefix(OPEN_TAG)) for part in parts[:-1]]
    else:
        value = _json(text)
        values = value if isinstance(value, list) else [value]
    calls = [_call(value, names) for value in values]
    if not calls or any(call is None for call in calls):
        return None
    return calls


def may_begin_calls(text: str) -> bool:
    """Whether an answer that begins with `text` may yet be calls for `parse_calls`: nothing
    but blanks yet, or a start that a call object, an array or a <tool_call> tag could have."""
    start = text.lstrip()
    if not start:
        return True
    if start[0] in "{[":
        return True
    return start.startswith(OPEN_TAG) or OPEN_TAG.startswith(start)


def arguments_text(call: Call) -> str:
    """OpenAI's `function.arguments`: the arguments as a JSON string."""
    return _compact(call.arguments)


def valid_name(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME and set(name) <= NAME_CHARS


def _call(value, names: set[str]) -> Call | None:
    if not isinstance(value, dict) or set(value) != {"name", "arguments"}:
        return None
    if value["name"] not in names or not isinstance(value["arguments"], dict):
        return None
    return Call(value["name"], value["arguments"])


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
