"""Function calling through the real clients against a live Daphne: the openai SDK (forced,
named, parallel and automatic calls, an agent loop that sends a result back, streamed calls
assembled by the SDK's stream helper) and langchain-openai (`bind_tools`,
`with_structured_output` both ways). The model is the random demo model, so every call that
validates here is the grammar's doing."""

import json
from typing import Literal

import jsonschema
import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests import schemas
from tests.e2e.clients import Account
from tests.e2e.servers import local_deployment
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["C", "F"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
CLOCK = {
    "type": "object",
    "properties": {"zone": {"type": "string", "maxLength": 10}},
    "required": ["zone"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": CLOCK}},
]
PARAMETERS = {"get_weather": WEATHER, "get_time": CLOCK}


class Weather(BaseModel):
    """The weather in a city."""

    city: str = Field(max_length=20)
    unit: Literal["C", "F"]


@pytest.fixture(scope="module")
def alice(demo_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tools")
    with local_deployment(tmp_path, TEST_MODEL_DIR, RATE_LIMIT="100000/minute") as base_url:
        yield Account(base_url, "tools-alice")


@pytest.fixture(scope="module")
def client(alice) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{alice.base_url}/v1", api_key=alice.key, max_retries=0)


def ask(**fields) -> dict:
    question = [{"role": "user", "content": "What is the weather in Oslo?"}]
    return {"model": "demo-poet", "messages": question, "tools": TOOLS, "max_tokens": 80,
            "temperature": 1.0, "seed": 3, **fields}


def assert_valid_call(call) -> None:
    assert call.type == "function" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])


@pytest.mark.parametrize("seed", [1, 2])
def test_it_forces_a_call_whose_arguments_validate_when_a_call_is_required(client, seed):
    raw = client.chat.completions.with_raw_response.create(
        **ask(seed=seed), tool_choice="required", parallel_tool_calls=False
    )

    schemas.validate("openai-chat", "CreateChatCompletionResponse", raw.http_response.json())
    choice = raw.parse().choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", None)
    [call] = choice.message.tool_calls
    assert_valid_call(call)


def test_it_calls_the_function_that_tool_choice_names(client):
    named = {"type": "function", "function": {"name": "get_time"}}

    choice = client.chat.completions.create(**ask(), tool_choice=named).choices[0]

    [call] = choice.message.tool_calls
    assert call.function.name == "get_time"
    assert_valid_call(call)


def test_it_calls_tools_on_lorax_s_openai_route_too(alice):
    lorax_route = openai.OpenAI(base_url=f"{alice.base_url}/lorax/v1", api_key=alice.key, max_retries=0)
    named = {"type": "function", "function": {"name": "get_weather"}}

    [call] = lorax_route.chat.completions.create(**ask(), tool_choice=named).choices[0].message.tool_calls

    assert call.function.name == "get_weather"
    assert_valid_call(call)


def test_it_makes_several_calls_at_once_when_parallel_calls_are_allowed(client):
    choice = client.chat.completions.create(**ask(max_tokens=120, seed=5), tool_choice="required").choices[0]

    assert choice.finish_reason in ("tool_calls", "length")
    assert [call.id for call in choice.message.tool_calls] == [
        f"call_{choice.message.tool_calls[0].id.split('_')[1]}_{i}" for i in range(len(choice.message.tool_calls))
    ]
    for call in choice.message.tool_calls:
        assert_valid_call(call)


def test_it_answers_text_when_the_model_makes_no_call_under_auto(client):
    # The random model never writes a call object by chance: auto reports its prose as text.
    choice = client.chat.completions.create(**ask(max_tokens=10), tool_choice="auto").choices[0]

    assert choice.message.tool_calls is None
    assert isinstance(choice.message.content, str) and choice.finish_reason in ("stop", "length")


def test_it_streams_prose_as_it_comes_under_auto(client):
    whole = client.chat.completions.create(**ask(max_tokens=10), tool_choice="auto")
    chunks = list(client.chat.completions.create(**ask(max_tokens=10), tool_choice="auto", stream=True))

    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) > 1  # not held to the end: prose cannot begin a call
    assert "".join(contents) == whole.choices[0].message.content


def test_it_runs_an_agent_loop_that_sends_the_result_back(client):
    first = client.chat.completions.create(**ask(), tool_choice="required", parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]

    def answer_with(result: str):
        messages = [
            *ask()["messages"],
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ]
        return client.chat.completions.create(**ask(messages=messages, max_tokens=5))

    short, long = answer_with("rain"), answer_with("rain and wind and snow and hail")

    assert short.choices[0].message.content is not None
    assert long.usage.prompt_tokens > short.usage.prompt_tokens  # the result is in the prompt


def test_it_refuses_a_result_for_a_call_nobody_made(client):
    messages = [*ask()["messages"], {"role": "tool", "tool_call_id": "call_nope", "content": "4"}]

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**ask(messages=messages))

    assert refused.value.body["param"] == "messages.1.tool_call_id"


def test_it_streams_a_call_that_the_sdk_assembles_and_parses(client):
    with client.chat.completions.stream(
        **ask(tools=[openai.pydantic_function_tool(Weather)]), tool_choice="required",
        parallel_tool_calls=False,
    ) as stream:
        events = list(stream)
        completion = stream.get_final_completion()

    for event in events:
        if event.type == "chunk":
            schemas.validate("openai-chat", "CreateChatCompletionStreamResponse", event.chunk.to_dict())
    kinds = [event.type for event in events]
    choice = completion.choices[0]
    assert kinds.count("tool_calls.function.arguments.delta") > 1  # as the tokens come
    assert "tool_calls.function.arguments.done" in kinds
    assert choice.finish_reason == "tool_calls"
    assert isinstance(choice.message.tool_calls[0].function.parsed_arguments, Weather)


def test_it_streams_several_calls_that_the_sdk_assembles(client):
    # a seed whose calls end by themselves (the SDK refuses to assemble a length-cut answer)
    fields = next(
        fields for seed in range(1, 9)
        if client.chat.completions.create(**(fields := ask(max_tokens=200, seed=seed)), tool_choice="required")
        .choices[0].finish_reason == "tool_calls"
    )
    whole = client.chat.completions.create(**fields, tool_choice="required")

    with client.chat.completions.stream(**fields, tool_choice="required") as stream:
        for _ in stream:
            pass
        completion = stream.get_final_completion()

    streamed = completion.choices[0].message.tool_calls
    def pairs(calls):
        return [(call.function.name, call.function.arguments) for call in calls]

    assert pairs(streamed) == pairs(whole.choices[0].message.tool_calls)
    for call in streamed:
        assert_valid_call(call)


def langchain_model(alice, **fields) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{alice.base_url}/v1", api_key=alice.key, model="demo-poet", max_retries=0,
        max_tokens=80, temperature=1.0, seed=4, **fields,
    )


def test_it_binds_tools_for_langchain(alice):
    @tool
    def get_weather(city: str, unit: Literal["C", "F"]) -> str:
        """The weather in a city."""
        return "rain"

    model = langchain_model(alice).bind_tools([get_weather], tool_choice="get_weather")

    [call] = model.invoke("What is the weather in Oslo?").tool_calls
    assert call["name"] == "get_weather"
    assert set(call["args"]) == {"city", "unit"} and call["args"]["unit"] in ("C", "F")


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_it_gives_langchain_structured_output(alice, method):
    model = langchain_model(alice).with_structured_output(Weather, method=method)

    assert isinstance(model.invoke("What is the weather in Oslo?"), Weather)
