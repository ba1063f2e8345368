"""Hostile input meets one gate on every transport (chatsite/chat/transports/gate.py): lone surrogates,
deep nesting, NUL characters, oversize bodies, non-ASCII digits. Each is a 4xx in the
transport's own error shape with a sentence, nothing is stored, the socket stays open, and
nothing reaches a 500. Run on SQLite and, with DATABASE_URL, on PostgreSQL (where NUL matters).
"""

import json

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chatsite.accounts.keys import api_key_create
from chatsite.chat.models import Conversation, Message
from chatsite.chat.transports.gate import MAX_DEPTH

pytestmark = pytest.mark.django_db

SURROGATE = '"a\\ud800b"'  # a JSON escape of a lone high surrogate: not text
LOW_SURROGATE = '"\\udc00"'
NUL = '"a\\u0000b"'
TOO_DEEP = "[" * (MAX_DEPTH + 1) + '"x"' + "]" * (MAX_DEPTH + 1)
VERY_DEEP = "[" * 100_000 + "]" * 100_000  # past any recursive decoder's stack
HOSTILE = {
    "lone surrogate": SURROGATE,
    "lone low surrogate": LOW_SURROGATE,
    "NUL": NUL,
    "too deep": TOO_DEEP,
    "very deep": VERY_DEEP,
}
SMALL_UPLOADS = override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
OVERSIZE = json.dumps({"content": "x" * 2000})


@pytest.fixture
def call(client, owner, demo_adapters):
    """POST a raw body with the owner's key; (status, JSON body, response)."""
    _, secret = api_key_create(user=owner)

    def request(path, raw, method="post", **headers):
        response = client.generic(
            method.upper(), path, raw, "application/json",
            HTTP_AUTHORIZATION=f"Bearer {secret}", **headers,
        )
        return response.status_code, response.json(), response

    return request


def nothing_stored(conversations_before: int = 0) -> bool:
    return Conversation.objects.count() == conversations_before and not Message.objects.exists()


def openai_body(content_json: str) -> str:
    return (
        '{"model": "demo-poet", "messages": [{"role": "user", "content": %s}]}' % content_json
    )


def lorax_body(inputs_json: str) -> str:
    return '{"inputs": %s, "parameters": {"max_new_tokens": 4}}' % inputs_json


def native_body(content_json: str) -> str:
    return '{"content": %s}' % content_json


# --- OpenAI ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_it_refuses_hostile_json_on_openai_in_openai_shape(call, value):
    status, answer, _ = call("/v1/chat/completions", openai_body(value))
    assert status == 400
    assert answer["error"]["code"] == "bad_request"
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].endswith(".")
    assert nothing_stored()


@SMALL_UPLOADS
def test_it_refuses_an_oversize_openai_body_with_json_413(call):
    status, answer, _ = call("/v1/chat/completions", openai_body(json.dumps("x" * 2000)))
    assert status == 413 and answer["error"]["code"] == "too_large"
    assert "1000 bytes" in answer["error"]["message"]


# --- LoRAX ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/lorax", "/lorax/generate", "/lorax/generate_stream"])
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_it_refuses_hostile_json_on_lorax_in_lorax_shape(call, path, value):
    status, answer, _ = call(path, lorax_body(value))
    assert status == 422
    assert answer["error_type"] == "validation" and answer["error"].endswith(".")
    assert nothing_stored()


@SMALL_UPLOADS
def test_it_refuses_an_oversize_lorax_body_with_json_413(call):
    status, answer, _ = call("/lorax/generate", lorax_body(json.dumps("x" * 2000)))
    assert status == 413 and answer["error_type"] == "validation"


# --- native ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_it_refuses_hostile_json_on_the_native_api_with_code_and_sentence(call, owner, value):
    conversation = Conversation.objects.create(owner=owner)
    status, answer, _ = call(
        f"/api/v1/conversations/{conversation.pk}/messages/", native_body(value)
    )
    assert (status, answer["code"]) == (400, "bad_request")
    assert answer["message"].endswith(".")
    assert not Message.objects.exists()


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_it_refuses_hostile_conversation_titles_on_the_native_api(call, value):
    status, answer, _ = call("/api/v1/conversations/", '{"title": %s}' % value)
    assert (status, answer["code"]) == (400, "bad_request")
    assert nothing_stored()


@SMALL_UPLOADS
def test_it_refuses_an_oversize_native_body_with_json_413(call):
    status, answer, _ = call("/api/v1/conversations/", OVERSIZE)
    assert (status, answer["code"]) == (413, "too_large")
    assert nothing_stored()


@pytest.mark.parametrize("value", ["²", "١٢", "１", "1" * 40, "-1", "1.5", "0x10"])
def test_it_refuses_a_last_event_id_that_is_not_plain_ascii_digits(client, owner, value):
    conversation = Conversation.objects.create(owner=owner)
    answer = Message.objects.create(conversation=conversation, role="assistant", content="Hi")
    client.force_login(owner)
    response = client.get(
        f"/api/v1/messages/{answer.pk}/stream", headers={"Last-Event-ID": value}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"


# --- page actions ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_it_refuses_hostile_json_in_page_actions(client, owner, value):
    client.force_login(owner)
    response = client.post("/c/new", '{"system_prompt": %s}' % value, "application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert nothing_stored()


@SMALL_UPLOADS
def test_it_refuses_an_oversize_page_action_with_json_413(client, owner):
    client.force_login(owner)
    response = client.post("/c/new", json.dumps({"system_prompt": "x" * 2000}), "application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert nothing_stored()


def test_it_refuses_a_nul_in_the_search_query(client, owner):
    Conversation.objects.create(owner=owner, title="Mine")
    client.force_login(owner)
    response = client.get("/c/search", {"q": "Mi\x00ne"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"


# --- socket ---------------------------------------------------------------------------------
SOCKET_FRAMES = {
    **{
        name: '{"type": "chat.send", "content": %s, "params": {"max_tokens": 2}}' % value
        for name, value in HOSTILE.items()
    },
    "lone surrogate in a key": '{"type": "chat.send", "content": "Hi", %s: 1}' % SURROGATE,
    "huge message id": '{"type": "chat.stop", "message": %d}' % 10**30,
    "huge resume": '{"type": "chat.follow", "message": 1, "resume": %d}' % 10**30,
    "digits that are not ASCII": '{"type": "chat.stop", "message": "١٢"}',
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", SOCKET_FRAMES.values(), ids=SOCKET_FRAMES.keys())
async def test_it_answers_hostile_frames_with_an_error_event_and_stays_open(
    owner, socket_for, frame
):
    socket = await socket_for(owner)
    await socket.communicator.send_to(text_data=frame)
    events = await socket.until_end()
    assert [e["type"] for e in events] == ["inference.error", "inference.end"]
    assert events[0]["payload"]["code"] == "bad_request"
    assert await database_sync_to_async(Message.objects.count)() == 0

    await socket.chat("Still there?", params={"max_tokens": 2})
    assert (await socket.until_end())[-1]["payload"]["reason"] in ("stop", "length")


@pytest.mark.django_db(transaction=True)
async def test_it_refuses_an_oversize_frame_and_stays_open(owner, socket_for, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    socket = await socket_for(owner)
    await socket.chat("x" * 2000)
    events = await socket.until_end()
    assert events[0]["payload"]["code"] == "too_large"
    await socket.chat("Small", params={"max_tokens": 2})
    assert (await socket.until_end())[-1]["payload"]["reason"] in ("stop", "length")


# --- Django's own answers under the API prefixes --------------------------------------------
@pytest.mark.parametrize(
    "method, path",
    [("get", "/v1/chat/completions"), ("get", "/lorax/generate"), ("get", "/lorax"),
     ("post", "/v1/models"), ("post", "/lorax/info")],
)
def test_it_answers_a_wrong_method_with_a_json_405_and_allow(call, method, path):
    status, answer, response = call(path, "{}", method=method)
    assert status == 405 and response["Allow"]
    message = answer["error"]["message"] if path.startswith("/v1") else answer["error"]
    assert method.upper() in message and response["Allow"] in message


@pytest.mark.parametrize(
    "path, shape",
    [("/v1/nothing", "openai"), ("/lorax/nothing", "lorax"), ("/api/nothing", "native"),
     ("/api/v1/nothing", "native")],
)
def test_it_answers_unknown_api_addresses_in_each_familys_shape(call, path, shape):
    status, answer, _ = call(path, "{}")
    assert status == 404
    if shape == "openai":
        assert answer["error"]["code"] == "not_found"
    elif shape == "lorax":
        assert answer["error_type"] == "not_found"
    else:
        assert answer["code"] == "not_found"


def test_it_answers_a_wrong_method_on_the_native_api_in_native_shape(call):
    status, answer, _ = call("/api/v1/adapters/", "{}", method="put")
    assert (status, answer["code"]) == (405, "method_not_allowed")


def test_it_keeps_html_404s_outside_the_apis(client, owner):
    client.force_login(owner)
    assert "html" in client.get("/no-such-page/")["Content-Type"]
