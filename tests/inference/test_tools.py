"""inference.tools: how `tool_choice: auto` recognises an answer that is a call, and the
fallback prompt's forms of calls and results."""

import pytest

from inference.tools import Call, Function, calls_text, may_begin_calls, parse_calls, results_text

FUNCTIONS = [Function("get_weather"), Function("get_time")]


@pytest.mark.parametrize(
    "text, calls",
    [
        ('{"name":"get_time","arguments":{"zone":"UTC"}}', [Call("get_time", {"zone": "UTC"})]),
        (' [{"name":"get_time","arguments":{}},{"name":"get_weather","arguments":{"city":"Oslo"}}]\n',
         [Call("get_time", {}), Call("get_weather", {"city": "Oslo"})]),
        ('<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>\n'
         '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>',
         [Call("get_time", {}), Call("get_weather", {})]),
    ],
)
def test_it_recognises_an_answer_that_is_calls(text, calls):
    assert parse_calls(text, FUNCTIONS) == calls


@pytest.mark.parametrize(
    "text",
    [
        "The weather is fine.",
        '{"name":"get_news","arguments":{}}',  # not one of the functions
        '{"name":"get_time","arguments":"{}"}',  # arguments not an object
        '{"name":"get_time","arguments":{},"why":1}',
        '{"name":"get_time","arguments":{}} and more',
        '<tool_call>{"name":"get_time","arguments":{}}</tool_call> done',
        "[]",
    ],
)
def test_it_reads_anything_else_as_text(text):
    assert parse_calls(text, FUNCTIONS) is None


def test_it_writes_calls_as_it_reads_them():
    calls = [Call("get_time", {"zone": "UTC"}), Call("get_weather", {})]

    assert parse_calls(calls_text(calls), FUNCTIONS) == calls
    assert parse_calls(calls_text(calls[:1]), FUNCTIONS) == calls[:1]


def test_it_writes_each_result_under_its_function_s_name():
    assert results_text([("get_time", "12:00"), ("get_weather", "rain")]) == (
        "Result of get_time:\n12:00\n\nResult of get_weather:\nrain"
    )


@pytest.mark.parametrize(
    "start, may", [("", True), ("  ", True), (' {"na', True), ("[", True), ("<tool_", True),
                   ("<tool_call>{", True), ("The", False), ("<b>", False), ("1", False)],
)
def test_it_tells_early_whether_an_answer_may_still_be_calls(start, may):
    assert may_begin_calls(start) is may
