"""OpenAI's function calling on `/v1/chat/completions` (docs/PROTOCOL.md §2, Tools): `tools`,
`tool_choice` and `parallel_tool_calls` checked and mapped to the fallback prompt and grammar
of `inference.tools`; assistant `tool_calls` and `role: "tool"` turns as transcript text; an
answer's calls in OpenAI's shape, whole or as stream deltas.

`tool_choice` "none" leaves the tools out of the prompt; "auto" (the default with tools) offers
them and reports an answer that is a call (`inference.tools.parse_calls`) as `tool_calls`;
"required" and a named function force a call with a grammar.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chatsite.errors import ChatError, field_error
from chatsite.chat.streams.protocol import ResponseFormat
from inference.errors import InferenceError
from inference.grammar import json_schema_grammar
from inference.tools import (
    Call,
    Function,
    arguments_text,
    call_schema,
    calls_text,
    may_begin_calls,
    parse_calls,
    results_text,
    tools_prompt,
    valid_name,
)

MAX_TOOLS = 128  # OpenAI's limit


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    description: str = ""
    parameters: dict | None = None
    # Strict or not, a forced call's arguments follow the parameters (the grammar's doing).
    strict: bool | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["function"]
    function: FunctionSpec


class CalledFunction(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    arguments: str


class ToolCall(BaseModel):
    """An earlier assistant turn's call, as a client sends it back."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1)
    type: Literal["function"]
    function: CalledFunction


@dataclass(frozen=True)
class ToolUse:
    """What a request's tools ask of its answer: the functions offered (none: no tools in
    the prompt), whether a call is forced (and of which functions), and whether several
    calls may come at once."""

    functions: tuple[Function, ...] = ()
    forced: tuple[Function, ...] = ()
    several: bool = True

    @property
    def active(self) -> bool:
        return bool(self.functions)

    def response_format(self) -> ResponseFormat | None:
        """A forced call as a JSON schema the engine's grammar enforces."""
        if not self.forced:
            return None
        schema = call_schema(list(self.forced), several=self.several)
        return ResponseFormat(type="json_schema", schema=schema)

    def may_call(self, text: str) -> bool:
        """Whether an answer that begins with `text` may yet turn out to be calls."""
        return bool(self.forced) or may_begin_calls(text)

    def calls_in(self, text: str) -> list[Call] | None:
        """The calls `text` makes; None for text, and for several calls when only one may be
        made (`parallel_tool_calls` false)."""
        calls = parse_calls(text, list(self.functions)) if self.active else None
        return calls if calls and (self.several or len(calls) == 1) else None


def tool_use(tools: list[Tool] | None, choice, parallel: bool | None) -> ToolUse:
    """The request's `tools`, `tool_choice` and `parallel_tool_calls`, checked; ChatError
    naming the field at fault."""
    if not tools:
        if tools is not None:
            raise _bad("tools", "must list at least one function; leave it out for none")
        for name, value in (("tool_choice", choice), ("parallel_tool_calls", parallel)):
            if value is not None:
                raise _bad(name, "is only allowed together with tools")
        return ToolUse()
    if len(tools) > MAX_TOOLS:
        raise _bad("tools", f"can list at most {MAX_TOOLS} functions")
    functions = tuple(_function(index, tool.function) for index, tool in enumerate(tools))
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise _bad("tools", "names a function twice")
    several = True if parallel is None else parallel
    if choice is None or choice == "auto":
        return ToolUse(functions, several=several)
    if choice == "none":
        return ToolUse(several=several)
    if choice == "required":
        return ToolUse(functions, functions, several)
    named = _named(choice)
    if named not in names:
        raise _bad("tool_choice.function.name", f"“{named}” is not one of the tools")
    # A named function: one call of it (OpenAI's reading), whatever parallel_tool_calls says.
    return ToolUse(functions, (functions[names.index(named)],), several=False)


def assistant_message(use: ToolUse, text: str, answer_pk: int) -> dict:
    """The `message` of a non-streamed choice: its calls, or its text."""
    calls = use.calls_in(text)
    message = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["content"] = None
        message["tool_calls"] = [
            {"id": _call_id(answer_pk, index), "type": "function", "function": _function_out(call)}
            for index, call in enumerate(calls)
        ]
    return message


# How a forced single call begins: the grammar writes `name` first (inference.tools.call_schema)
# and compact JSON, so the arguments follow this and end one character before the answer does.
CALL_START = re.compile(r'\{"name":"([A-Za-z0-9_-]{1,64})","arguments":')


class ToolStream:
    """One streamed choice's deltas when tools are offered. Text that cannot begin a call
    streams as content as it comes; a forced single call streams as soon as its name is
    written, its arguments in fragments as they come; anything else is held to the end, when
    `parse_calls` decides."""

    def __init__(self, use: ToolUse, answer_pk: int):
        self.use = use
        self.answer_pk = answer_pk
        self.text = ""
        self.state = "holding"  # or "prose", or "call" (a forced single call, streaming)
        self.sent = 0  # how much of the text a call's deltas have sent

    def push(self, piece: str) -> list[dict]:
        self.text += piece
        if self.state == "prose":
            return [{"content": piece}]
        if self.state == "holding" and not self.use.may_call(self.text):
            self.state = "prose"
            return [{"content": self.text}]
        deltas = []
        if self.state == "holding" and self.use.forced and not self.use.several:
            start = CALL_START.match(self.text)
            if start:
                self.state, self.sent = "call", start.end()
                deltas.append(_call_head(self.answer_pk, 0, start.group(1)))
        if self.state == "call":
            # The last character may be the call object's own closing brace: held back.
            deltas += self._arguments(len(self.text) - 1)
        return deltas

    def end(self) -> tuple[list[dict], bool]:
        """The last deltas, and whether the choice was calls."""
        if self.state == "prose":
            return [], False
        if self.state == "call":
            closed = self.use.calls_in(self.text) is not None
            return self._arguments(len(self.text) - 1 if closed else len(self.text)), True
        calls = self.use.calls_in(self.text)
        if calls:
            return call_deltas(calls, self.answer_pk), True
        return ([{"content": self.text}] if self.text else []), False

    def _arguments(self, upto: int) -> list[dict]:
        if upto <= self.sent:
            return []
        fragment, self.sent = self.text[self.sent:upto], upto
        return [{"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}]


def _call_head(answer_pk: int, index: int, name: str) -> dict:
    head = {"index": index, "id": _call_id(answer_pk, index), "type": "function",
            "function": {"name": name, "arguments": ""}}
    return {"tool_calls": [head]}


def call_deltas(calls: list[Call], answer_pk: int) -> list[dict]:
    """Stream deltas of `calls` as OpenAI sends them: per call, its id, type and name with
    empty arguments, then the arguments."""
    deltas = []
    for index, call in enumerate(calls):
        deltas.append(_call_head(answer_pk, index, call.name))
        arguments = _function_out(call)["arguments"]
        deltas.append({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})
    return deltas


def transcript(messages, use: ToolUse) -> list[tuple[str, str]]:
    """`messages` as (role, text) turns of the fallback prompt: an assistant turn's calls as
    their JSON, the results of consecutive `tool` turns as one user turn, and the offered
    functions described in a system turn after the client's own."""
    turns: list[tuple[str, str]] = []
    called: dict[str, str] = {}  # call id: function name
    results: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        _check_shape(index, message)
        if message.role == "tool":
            if message.tool_call_id not in called:
                raise _bad(f"messages.{index}.tool_call_id", "names no call of an earlier turn")
            function = called[message.tool_call_id]
            if message.name is not None and message.name != function:
                raise _bad(f"messages.{index}.name", f"must be “{function}”, the function its call named")
            results.append((function, message.text()))
            continue
        if results:
            turns.append(("user", results_text(results)))
            results = []
        if message.tool_calls:
            calls = calls_sent_back(f"messages.{index}", message.tool_calls)
            called.update({call.id: call.function.name for call in message.tool_calls})
            text = "\n".join(part for part in (message.text(), calls_text(calls)) if part)
            turns.append(("assistant", _spoken_by(message, text)))
        else:
            role = "system" if message.role == "developer" else message.role
            turns.append((role, _spoken_by(message, message.text())))
    if results:
        turns.append(("user", results_text(results)))
    if use.active:
        prompt = tools_prompt(list(use.functions), several=use.several)
        turns.insert(len(turns) - 1, ("system", prompt))
    return turns


def _spoken_by(message, text: str) -> str:
    # OpenAI's `name` tells participants of one role apart; templates have no field for it.
    return f"{message.name}: {text}" if message.name else text


def _check_shape(index: int, message) -> None:
    where = f"messages.{index}"
    if message.tool_calls is not None and message.role != "assistant":
        raise _bad(f"{where}.tool_calls", "only an assistant turn makes calls")
    if (message.tool_call_id is not None) != (message.role == "tool"):
        raise _bad(f"{where}.tool_call_id", "a tool turn, and only a tool turn, names its call")
    if message.content is None and not message.tool_calls:
        raise _bad(f"{where}.content", "may be null only in an assistant turn with tool_calls")


def _call_id(answer_pk: int, index: int) -> str:
    return f"call_{answer_pk}_{index}"


def calls_sent_back(where: str, tool_calls: list[ToolCall]) -> list[Call]:
    """An assistant turn's `tool_calls` as calls; ChatError naming arguments that are not a
    JSON object."""
    calls = []
    for index, call in enumerate(tool_calls):
        try:
            arguments = json.loads(call.function.arguments)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise _bad(
                f"{where}.tool_calls.{index}.function.arguments", "must be a JSON object's text"
            )
        calls.append(Call(call.function.name, arguments))
    return calls


def _function(index: int, spec: FunctionSpec) -> Function:
    where = f"tools.{index}.function"
    if not valid_name(spec.name):
        raise _bad(f"{where}.name", "must be 1 to 64 letters, digits, underscores or dashes")
    if spec.parameters is not None:
        try:
            json_schema_grammar(spec.parameters)
        except InferenceError as error:
            raise field_error(f"{where}.parameters", error.message, error.code) from None
    return Function(spec.name, spec.description, spec.parameters)


def _named(choice) -> str:
    if isinstance(choice, str):
        raise _bad("tool_choice", "must be none, auto, required or a function")
    if not isinstance(choice, dict) or choice.get("type") != "function":
        raise _bad("tool_choice", "must be none, auto, required or {\"type\": \"function\", …}")
    if set(choice) != {"type", "function"}:
        raise _bad("tool_choice", "has only type and function")
    function = choice["function"]
    if not isinstance(function, dict) or set(function) != {"name"}:
        raise _bad("tool_choice.function", "must be an object with the function's name only")
    return function["name"]


def _function_out(call: Call) -> dict:
    return {"name": call.name, "arguments": arguments_text(call)}


def _bad(field: str, problem: str) -> ChatError:
    return field_error(field, f"{problem}.")
