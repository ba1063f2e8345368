"""Structured output and sampling parameters through the real clients against a live Daphne:
the openai SDK's `parse()` with a pydantic model, JSON modes streamed and not, penalties and
logit bias; lorax-client's `response_format`; the native API's `parameters.response_format`.
The model is the random demo model, so every JSON answer here is the grammar's doing."""

import json
from typing import Literal

import jsonschema
import lorax
import openai
import pytest
from pydantic import BaseModel, Field
from transformers import AutoTokenizer

from tests import schemas
from tests.e2e.clients import Account
from tests.e2e.servers import local_deployment
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}},
    },
    "required": ["name", "age", "pets"],
    "additionalProperties": False,
}


class Person(BaseModel):
    name: str = Field(max_length=40)
    age: int
    pets: list[Literal["cat", "dog"]]


@pytest.fixture(scope="module")
def alice(demo_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("structured")
    with local_deployment(tmp_path, TEST_MODEL_DIR, RATE_LIMIT="100000/minute") as base_url:
        yield Account(base_url, "structured-alice")


def openai_client(account) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{account.base_url}/v1", api_key=account.key, max_retries=0)


def ask(**fields) -> dict:
    return {"model": "demo-poet", "messages": [{"role": "user", "content": "Who are you?"}], **fields}


def test_it_parses_into_a_pydantic_model_with_the_openai_sdk(alice):
    completion = openai_client(alice).chat.completions.parse(
        **ask(max_tokens=150, temperature=1.0, seed=4), response_format=Person
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Person)
    assert Person.model_validate_json(choice.message.content) == choice.message.parsed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_answers_json_that_validates_against_a_strict_json_schema(alice, seed):
    completion = openai_client(alice).chat.completions.create(
        **ask(max_tokens=150, temperature=1.0, seed=seed),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
        },
    )

    jsonschema.validate(json.loads(completion.choices[0].message.content), PERSON_SCHEMA)


def test_it_streams_a_json_object_in_chunks_that_join_into_valid_json(alice):
    chunks = list(
        openai_client(alice).chat.completions.create(
            **ask(max_tokens=100, temperature=0.9, seed=7),
            response_format={"type": "json_object"},
            stream=True,
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(json.loads(text), dict)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_it_keeps_the_json_valid_when_max_tokens_cuts_it_short(alice):
    completion = openai_client(alice).chat.completions.create(
        **ask(max_tokens=60, temperature=1.0, seed=5),
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON_SCHEMA}},
    )

    jsonschema.validate(json.loads(completion.choices[0].message.content), PERSON_SCHEMA)


def test_it_honours_logit_bias_and_the_penalties(alice, demo_model):
    client = openai_client(alice)
    full_stop = AutoTokenizer.from_pretrained(demo_model.base_dir).convert_tokens_to_ids(".")
    plain = client.chat.completions.create(**ask(max_tokens=40, temperature=0, seed=1))
    biased = client.chat.completions.create(
        **ask(max_tokens=40, temperature=0, seed=1), logit_bias={str(full_stop): -100}
    )
    penalised = client.chat.completions.create(
        **ask(max_tokens=40, temperature=0, seed=1), presence_penalty=2, frequency_penalty=2
    )

    assert "." in plain.choices[0].message.content
    assert "." not in biased.choices[0].message.content
    assert penalised.choices[0].message.content != plain.choices[0].message.content


def test_it_answers_n_choices_that_differ_with_usage_for_them_all(alice):
    raw = openai_client(alice).chat.completions.with_raw_response.create(
        **ask(max_tokens=8, temperature=1.0, seed=2), n=3
    )

    schemas.validate("openai-chat", "CreateChatCompletionResponse", raw.http_response.json())
    completion = raw.parse()
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert len({choice.message.content for choice in completion.choices}) > 1
    one = openai_client(alice).chat.completions.create(**ask(max_tokens=8, temperature=1.0, seed=2))
    assert completion.choices[0].message.content == one.choices[0].message.content
    assert completion.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counts once
    assert completion.usage.completion_tokens > one.usage.completion_tokens


def test_it_streams_n_choices_interleaved_by_index(alice):
    fields = ask(max_tokens=8, temperature=1.0, seed=6, n=2)
    whole = openai_client(alice).chat.completions.create(**fields)
    chunks = list(
        openai_client(alice).chat.completions.create(
            **fields, stream=True, stream_options={"include_usage": True}
        )
    )

    texts = ["", ""]
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == [choice.message.content for choice in whole.choices]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 2
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_it_refuses_a_schema_it_cannot_enforce_with_400_naming_it(alice):
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(alice).chat.completions.create(
            **ask(),
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "bad", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nope"}}}},
            },
        )

    assert refused.value.code == "invalid_schema"
    assert "/nope" in refused.value.message


def test_it_answers_lorax_response_format_with_json_for_the_schema(alice):
    client = lorax.Client(f"{alice.base_url}/lorax", headers=alice.headers)

    response = client.generate(
        "Describe a person:",
        adapter_id="demo-chef",
        max_new_tokens=150,
        do_sample=True,
        seed=3,
        top_k=50,
        repetition_penalty=1.2,
        response_format={"type": "json_object", "schema": PERSON_SCHEMA},
    )

    jsonschema.validate(json.loads(response.generated_text), PERSON_SCHEMA)


def test_it_refuses_an_unenforceable_lorax_schema_with_422(alice):
    client = lorax.Client(f"{alice.base_url}/lorax", headers=alice.headers)

    with pytest.raises(lorax.errors.ValidationError, match="nope"):
        client.generate(
            "x", response_format={"type": "json_object", "schema": {"$ref": "#/nope"}}
        )


def test_it_answers_lorax_temperature_zero_greedily(alice):
    client = lorax.Client(f"{alice.base_url}/lorax", headers=alice.headers)

    first = client.generate("The river", max_new_tokens=10, temperature=0, seed=1)
    second = client.generate("The river", max_new_tokens=10, temperature=0, seed=2)

    assert first.generated_text == second.generated_text


def test_it_follows_the_native_response_format(alice):
    sent = alice.send(
        "Describe a person.",
        max_tokens=150,
        parameters={
            "max_tokens": 150,
            "seed": 2,
            "temperature": 1.0,
            "response_format": {"type": "json_schema", "schema": PERSON_SCHEMA},
        },
    )

    message = alice.wait_for_status(sent["message"])
    assert message["status"] == "complete"
    jsonschema.validate(json.loads(message["content"]), PERSON_SCHEMA)


def test_it_reports_the_seed_it_sampled_with_so_the_answer_can_be_repeated(alice):
    client = lorax.Client(f"{alice.base_url}/lorax", headers=alice.headers)

    first = client.generate("The river", max_new_tokens=10, do_sample=True)
    again = client.generate("The river", max_new_tokens=10, do_sample=True, seed=first.details.seed)

    assert first.details.seed is not None
    assert again.generated_text == first.generated_text
    assert client.generate("The river", max_new_tokens=4).details.seed is None  # greedy


def test_it_leaves_the_details_out_of_a_stream_that_asks_for_none(alice):
    client = lorax.Client(f"{alice.base_url}/lorax", headers=alice.headers)

    responses = list(client.generate_stream("The river", max_new_tokens=5, details=False))

    assert responses[-1].generated_text is not None
    assert responses[-1].details is None
