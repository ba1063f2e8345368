"""Function calling's fields on /v1/chat/completions, refused when wrong: 400, the field
named, nothing stored. (Honoured calls are exercised with the real clients in
tests/e2e/test_tools.py.)"""

import pytest

from chatsite.chat.transports.openai_api import ChatMessage
from chatsite.chat.transports.openai_tools import Tool, tool_use, transcript
from tests.chat.conftest import chat, nothing_stored

pytestmark = pytest.mark.django_db

NOW = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
UNENFORCEABLE = {"type": "object", "properties": {"a": {"$ref": "#/definitions/missing"}}}


def function(**fields):
    return {"type": "function", "function": {"name": "now", **fields}}


def turns(*messages):
    return [{"role": "user", "content": "Hi"}, *messages, {"role": "user", "content": "And?"}]


CALLED = {"role": "assistant", "content": None,
          "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "now", "arguments": "{}"}}]}


@pytest.mark.parametrize(
    "body, code, param",
    [
        (chat(tools=[]), "bad_request", "tools"),
        (chat(tools=[NOW, NOW]), "bad_request", "tools"),
        (chat(tools=[{"type": "retrieval", "function": {"name": "now"}}]), "bad_request", "tools.0.type"),
        (chat(tools=[function(name="what time")]), "bad_request", "tools.0.function.name"),
        (chat(tools=[function(parameters=UNENFORCEABLE)]), "invalid_schema", "tools.0.function.parameters"),
        (chat(tools=[function(returns={})]), "bad_request", "tools.0.function.returns"),
        (chat(tool_choice="required"), "bad_request", "tool_choice"),
        (chat(parallel_tool_calls=False), "bad_request", "parallel_tool_calls"),
        (chat(tools=[NOW], tool_choice="always"), "bad_request", "tool_choice"),
        (chat(tools=[NOW], tool_choice={"type": "function", "function": {"name": "later"}}), "bad_request", "tool_choice.function.name"),
        (chat(tools=[NOW], response_format={"type": "json_object"}), "bad_request", "response_format"),
        (chat(tools=[NOW], logprobs=True), "bad_request", "logprobs"),
        (chat(functions=[{"name": "now"}]), "unsupported_parameter", "functions"),
        (chat(function_call="auto"), "unsupported_parameter", "function_call"),
        (chat(messages=[{"role": "user", "content": None}]), "bad_request", "messages.0.content"),
        (chat(messages=turns({"role": "tool", "content": "4"})), "bad_request", "messages.1.tool_call_id"),
        (chat(messages=turns({"role": "tool", "tool_call_id": "call_9", "content": "4"})), "bad_request", "messages.1.tool_call_id"),
        (chat(messages=turns({**CALLED, "role": "user"})), "bad_request", "messages.1.tool_calls"),
        (chat(messages=turns(CALLED, {"role": "tool", "tool_call_id": "call_1", "name": "later", "content": "4"})), "bad_request", "messages.2.name"),
        (chat(messages=[{"role": "user", "name": "", "content": "Hi"}]), "bad_request", "messages.0.name"),
        (chat(messages=turns({**CALLED, "tool_calls": [{**CALLED["tool_calls"][0], "function": {"name": "now", "arguments": "[1]"}}]})), "bad_request", "messages.1.tool_calls.0.function.arguments"),
    ],
)
def test_it_refuses_bad_tool_fields_naming_them(call, body, code, param):
    status, answer, _ = call("/v1/chat/completions", body)

    assert (status, answer["error"]["code"], answer["error"]["param"]) == (400, code, param)
    assert answer["error"]["message"].endswith(".")
    assert nothing_stored()


def test_it_says_why_a_function_s_parameters_cannot_be_enforced(call):
    _, answer, _ = call("/v1/chat/completions", chat(tools=[function(parameters=UNENFORCEABLE)]))

    assert "missing" in answer["error"]["message"]


def test_it_reads_several_calls_as_text_when_parallel_calls_are_off():
    tools = [Tool.model_validate(NOW)]
    two = '[{"name":"now","arguments":{}},{"name":"now","arguments":{}}]'

    assert len(tool_use(tools, "auto", None).calls_in(two)) == 2
    assert tool_use(tools, "auto", False).calls_in(two) is None
    assert tool_use(tools, "auto", False).calls_in('{"name":"now","arguments":{}}')


def test_it_shows_the_model_who_spoke_when_a_turn_is_named():
    messages = [ChatMessage(role="user", name="ada", content="Hi"), ChatMessage(role="user", content="And?")]

    assert transcript(messages, tool_use(None, None, None)) == [("user", "ada: Hi"), ("user", "And?")]
