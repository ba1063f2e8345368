"""Bad input to the HTTP APIs: a 4xx in each protocol's own error shape with a sentence, never
a 500, and nothing stored. (Good input is exercised with the real clients in tests/e2e.)"""


import pytest
from django.test import override_settings

from chatsite.accounts.keys import api_key_create
from chatsite.chat.models import Conversation, Message
from tests.chat.conftest import chat, generate, nothing_stored

pytestmark = pytest.mark.django_db


# --- OpenAI ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, status, code, param",
    [
        ("{not json", 400, "bad_request", None),
        ("[1, 2]", 400, "bad_request", None),
        (chat(temperature="hot"), 400, "bad_request", "temperature"),
        (chat(messages="Hi"), 400, "bad_request", "messages"),
        (chat(messages=[]), 400, "bad_request", "messages"),
        (chat(messages=[{"role": "tool", "content": "x"}]), 400, "bad_request", "messages.0.tool_call_id"),
        (chat(messages=[{"role": "function", "content": "x"}]), 400, "bad_request", "messages.0.role"),
        (chat(messages=[{"role": "assistant", "content": "x"}]), 400, "bad_request", None),
        (chat(max_tokens=0), 400, "bad_request", "max_tokens"),
        (chat(max_tokens=10**6), 400, "bad_request", "max_tokens"),
        (chat(stop=["x"] * 5), 400, "bad_request", "stop"),
        (chat(n=5), 400, "bad_request", "n"),  # more than MAX_CHOICES
        (chat(ignore_eos="yes"), 400, "bad_request", "ignore_eos"),
        (chat(model="no-such-adapter"), 404, "model_not_found", "model"),
        (chat(messages=[{"role": "user", "content": "x" * 40000}]), 400, "context_too_long", None),
    ],
)
def test_it_refuses_bad_openai_requests_in_openai_shape(call, body, status, code, param):
    raw = body if isinstance(body, str) else None
    got_status, answer, _ = call("/v1/chat/completions", body, raw=raw)

    assert got_status == status
    assert answer["error"]["code"] == code
    assert answer["error"]["param"] == param
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].endswith(".")
    assert nothing_stored()


@pytest.mark.parametrize("key", [None, "pb_wrong"])
def test_it_answers_401_on_v1_without_a_good_key(call, key):
    for path, method in [("/v1/chat/completions", "post"), ("/v1/models", "get")]:
        status, answer, _ = call(path, chat(), method=method, key=key)
        assert status == 401
        assert answer["error"]["type"] == "authentication_error"


# --- LoRAX ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/lorax", "/lorax/generate", "/lorax/generate_stream"])
@pytest.mark.parametrize(
    "body, status, error_type",
    [
        ("{not json", 422, "validation"),
        ({"inputs": 5}, 422, "validation"),
        ({"parameters": {}}, 422, "validation"),
        ({"inputs": "   "}, 422, "validation"),
        ({"inputs": "x" * 40000}, 422, "validation"),
        (generate(max_new_tokens=0), 422, "validation"),
        (generate(max_new_tokens=10**6), 422, "validation"),
        (generate(top_k=0), 422, "validation"),
        (generate(adapter_source="s3"), 422, "validation"),
        (generate(best_of=2), 422, "validation"),
        (generate(ignore_eos_token="sure"), 422, "validation"),
        (generate(adapter_id="no-such-adapter"), 404, "not_found"),
    ],
)
def test_it_refuses_bad_lorax_requests_in_lorax_shape(call, path, body, status, error_type):
    raw = body if isinstance(body, str) else None
    got_status, answer, _ = call(path, body, raw=raw)

    assert (got_status, answer["error_type"]) == (status, error_type)
    assert answer["error"]
    assert nothing_stored()


def test_it_answers_lorax_calls_without_a_key_with_401(call):
    status, answer, _ = call("/lorax", generate(), key=None)
    assert status == 401 and answer["error_type"] == "authentication"


def test_it_answers_post_lorax_exactly_without_a_slash_redirect(call):
    status, _, response = call("/lorax", {"inputs": 1})
    assert status == 422 and "Location" not in response


# --- native ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, code",
    [
        ("{not json", "bad_request"),
        ({"content": 5}, "bad_request"),
        ({}, "bad_request"),
        ({"content": "Hi", "parameters": {"max_tokens": "many"}}, "bad_request"),
        ({"content": "Hi", "parameters": {"max_tokens": 0}}, "bad_request"),
        ({"content": "Hi", "parameters": {"max_tokens": 10**6}}, "bad_request"),
        ({"content": "Hi", "parameters": {"temperature": 9}}, "bad_request"),
        ({"content": "Hi", "parameters": {"ignore_eos": "maybe"}}, "bad_request"),
        ({"content": "   "}, "invalid_content"),
        ({"content": "x" * 40000}, "invalid_content"),
    ],
)
def test_it_refuses_bad_native_messages_with_code_and_sentence(call, conversation, body, code):
    raw = body if isinstance(body, str) else None
    status, answer, _ = call(f"/api/v1/conversations/{conversation.pk}/messages/", body, raw=raw)

    assert status == 400
    assert answer["code"] == code and answer["message"]
    assert nothing_stored(conversations_before=1)


def test_it_refuses_an_unknown_adapter_on_the_native_api(call, conversation):
    status, answer, _ = call(
        f"/api/v1/conversations/{conversation.pk}/messages/", {"content": "Hi", "adapter": "nope"}
    )
    assert (status, answer["code"]) == (404, "unknown_adapter")
    assert nothing_stored(conversations_before=1)


def test_it_refuses_conversations_with_bad_fields(call):
    for body in (
        {"title": 5},
        {"adapter": "nope"},
        {"system_prompt": "x" * 40000},
        {"title": "x" * 201},
    ):
        status, answer, _ = call("/api/v1/conversations/", body)
        assert 400 <= status < 500 and answer["message"]
    assert nothing_stored()


def test_it_refuses_a_bad_last_event_id(client, owner, conversation):
    message = Message.objects.create(conversation=conversation, role="assistant", content="x")
    _, secret = api_key_create(user=owner)

    response = client.get(
        f"/api/v1/messages/{message.pk}/stream",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
        HTTP_LAST_EVENT_ID="soon",
    )

    assert response.status_code == 400 and response.json()["code"] == "bad_request"


def test_it_answers_unknown_api_addresses_with_json_404(call):
    status, answer, _ = call("/api/v1/nothing-here", {}, method="post")
    assert (status, answer["code"]) == (404, "not_found")


# --- limits ---------------------------------------------------------------------------------
@override_settings(MAX_LIVE_ANSWERS=2)
def test_it_refuses_a_generation_beyond_the_concurrency_limit(call, conversation):
    for _ in range(2):
        Message.objects.create(conversation=conversation, role="assistant", status="streaming")

    for path, body in [
        (f"/api/v1/conversations/{conversation.pk}/messages/", {"content": "Hi"}),
        ("/v1/chat/completions", chat()),
        ("/lorax", generate()),
    ]:
        status, _, response = call(path, body)
        assert status == 429 and int(response["Retry-After"]) > 0
    assert Message.objects.count() == 2 and Conversation.objects.count() == 1


@override_settings(RATE_LIMIT="3/minute")
def test_it_rate_limits_each_family_with_a_sentence(call):
    for _ in range(3):
        assert call("/api/v1/adapters/", method="get")[0] == 200
    status, native, response = call("/api/v1/adapters/", method="get")
    assert status == 429 and native["code"] == "rate_limited" and response["Retry-After"]
    status, openai_error, _ = call("/v1/models", method="get")
    assert status == 429 and openai_error["error"]["type"] == "rate_limit_error"
    status, lorax_error, _ = call("/lorax", generate())
    assert status == 429 and lorax_error["error_type"] == "overloaded"
