"""Structured output and sampling parameters on the three HTTP APIs, refused when wrong: each
API's status and error shape, the field named, and nothing stored. (Honoured parameters are
exercised with the real clients in tests/e2e/test_structured_output.py; tools' refusals are
tests/chat/test_tool_params.py.)"""

import pytest

from tests.chat.conftest import chat, generate, nothing_stored

pytestmark = pytest.mark.django_db

UNENFORCEABLE = {"type": "object", "properties": {"a": {"$ref": "#/definitions/missing"}}}


def json_schema(schema, **fields):
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, **fields}}


@pytest.mark.parametrize(
    "body, code, param",
    [
        (chat(response_format={"type": "xml"}), "bad_request", "response_format.type"),
        (chat(response_format={"type": "json_schema"}), "bad_request", "response_format.json_schema"),
        (chat(response_format={"type": "json_schema", "json_schema": {"schema": {}}}), "bad_request", "response_format.json_schema.name"),
        (chat(response_format=json_schema(UNENFORCEABLE)), "invalid_schema", "response_format"),
        (chat(response_format=json_schema({"type": "nonsense"})), "invalid_schema", "response_format"),
        (chat(response_format={"type": "json_object", "schema": {}}), "bad_request", "response_format.schema"),
        (chat(presence_penalty=3), "bad_request", "presence_penalty"),
        (chat(frequency_penalty=-2.5), "bad_request", "frequency_penalty"),
        (chat(logit_bias={"the": 5}), "bad_request", "logit_bias.the"),
        (chat(logit_bias={"12": 101}), "bad_request", "logit_bias.12"),
        (chat(top_k=-2), "bad_request", "top_k"),
        (chat(repetition_penalty=0), "bad_request", "repetition_penalty"),
        (chat(top_logprobs=2), "bad_request", "top_logprobs"),  # without logprobs: true
        (chat(logprobs=True, top_logprobs=21), "bad_request", "top_logprobs"),
        (chat(logprobs=True, top_logprobs=-1), "bad_request", "top_logprobs"),
        (chat(logprobs="yes"), "bad_request", "logprobs"),
        (chat(response_format={"type": "json_object"}, ignore_eos=True), "bad_request", "ignore_eos"),
    ],
)
def test_it_refuses_bad_openai_parameters_naming_them(call, body, code, param):
    status, answer, _ = call("/v1/chat/completions", body)

    assert (status, answer["error"]["code"], answer["error"]["param"]) == (400, code, param)
    assert answer["error"]["message"].endswith(".")
    assert nothing_stored()


def test_it_refuses_decoder_input_details_in_a_lorax_stream_as_lorax_does(call):
    status, answer, _ = call("/lorax/generate_stream", generate(decoder_input_details=True))

    assert (status, answer["error_type"]) == (422, "validation")
    assert "decoder_input_details" in answer["error"] and "stream" in answer["error"]
    assert nothing_stored()


def test_it_says_why_a_schema_cannot_be_enforced(call):
    _, answer, _ = call("/v1/chat/completions", chat(response_format=json_schema(UNENFORCEABLE)))

    assert "/definitions/missing" in answer["error"]["message"]


@pytest.mark.parametrize(
    "parameters, words",
    [
        ({"response_format": {"type": "json_object", "schema": UNENFORCEABLE}}, "/definitions/missing"),
        ({"response_format": {"type": "regex"}}, "response_format.type"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"temperature": -1}, "temperature"),
        ({"typical_p": 0.5}, "typical_p"),
        ({"truncate": 10}, "truncate"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"watermark": True}, "watermark"),
        ({"return_k_alternatives": 21}, "return_k_alternatives"),
        ({"decoder_input_details": True, "details": False}, "decoder_input_details"),
    ],
)
def test_it_refuses_bad_lorax_parameters_naming_them(call, parameters, words):
    status, answer, _ = call("/lorax/generate", generate(**parameters))

    assert (status, answer["error_type"]) == (422, "validation")
    assert words in answer["error"]
    assert nothing_stored()


@pytest.mark.parametrize(
    "parameters, words",
    [
        ({"response_format": {"type": "json_schema", "schema": UNENFORCEABLE}}, "/definitions/missing"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"logit_bias": {"word": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 500}}, "logit_bias"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"top_k": -1}, "top_k"),
        ({"typical_p": 0.9}, "typical_p"),
    ],
)
def test_it_refuses_bad_native_parameters_naming_them(call, conversation, parameters, words):
    status, answer, _ = call(
        f"/api/v1/conversations/{conversation.pk}/messages/",
        {"content": "Hi", "parameters": parameters},
    )

    assert status == 400
    assert words in answer["message"]
    assert nothing_stored(conversations_before=1)
