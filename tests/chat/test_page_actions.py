"""The chat page's JSON actions: rename, delete, settings, new, search. Owner-scoped, CSRF-checked."""

import json

import pytest
from django.test import Client

from chatsite.chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def mine(owner):
    return Conversation.objects.create(owner=owner, title="Garden plans")


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_it_renames_a_conversation(signed_in, mine):
    response = post(signed_in, f"/c/{mine.pk}/rename", {"title": "  Vegetable   beds "})
    assert response.status_code == 200
    assert response.json()["title"] == "Vegetable beds"
    mine.refresh_from_db()
    assert mine.title == "Vegetable beds"


@pytest.mark.parametrize("title", ["", "   ", "x" * 201])
def test_it_refuses_a_blank_or_overlong_name(signed_in, mine, title):
    response = post(signed_in, f"/c/{mine.pk}/rename", {"title": title})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_title"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"title": 5}'])
def test_it_refuses_a_malformed_body(signed_in, mine, body):
    response = signed_in.post(f"/c/{mine.pk}/rename", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_it_deletes_a_conversation_with_its_messages(signed_in, mine):
    Message.objects.create(conversation=mine, role="user", content="Hi")
    assert post(signed_in, f"/c/{mine.pk}/delete", {}).status_code == 200
    assert not Conversation.objects.filter(pk=mine.pk).exists()
    assert not Message.objects.filter(conversation_id=mine.pk).exists()


@pytest.mark.parametrize("action", ["rename", "delete", "settings"])
def test_it_answers_404_for_another_users_conversation(client, other_user, mine, action):
    client.force_login(other_user)
    response = post(client, f"/c/{mine.pk}/{action}", {"title": "Mine now", "adapter": ""})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert Conversation.objects.get(pk=mine.pk).title == "Garden plans"


def test_it_sets_the_adapter_and_system_prompt(signed_in, mine, demo_adapters):
    response = post(signed_in, f"/c/{mine.pk}/settings",
                    {"adapter": "demo-chef", "system_prompt": "Answer in French."})
    assert response.status_code == 200
    assert response.json()["adapter"] == "demo-chef"
    mine.refresh_from_db()
    assert mine.adapter.slug == "demo-chef" and mine.system_prompt == "Answer in French."


def test_it_refuses_an_unknown_adapter_with_the_status_every_transport_gives_it(
    signed_in, mine, demo_adapters
):
    response = post(signed_in, f"/c/{mine.pk}/settings", {"adapter": "no-such", "system_prompt": ""})
    assert response.status_code == 404  # chatsite.errors.STATUS_OF_CODE, as the APIs answer it
    assert response.json()["error"]["code"] == "unknown_adapter"


def test_it_creates_a_conversation_with_settings(signed_in, owner, demo_adapters):
    response = post(signed_in, "/c/new", {"adapter": "demo-poet", "system_prompt": "Rhyme."})
    assert response.status_code == 200
    conversation = Conversation.objects.get(pk=response.json()["id"])
    assert conversation.owner == owner and conversation.system_prompt == "Rhyme."


def test_it_searches_titles_and_messages_of_the_users_own_conversations(
    signed_in, owner, other_user, mine
):
    other = Conversation.objects.create(owner=owner, title="Holiday")
    Message.objects.create(conversation=other, role="user", content="Pack the TOMATO seeds")
    Conversation.objects.create(owner=other_user, title="Tomato soup")
    found = signed_in.get("/c/search", {"q": "tomato"}).json()["results"]
    assert [item["id"] for item in found] == [other.pk]
    everything = signed_in.get("/c/search").json()["results"]
    assert {item["id"] for item in everything} == {mine.pk, other.pk}


def test_it_needs_post_for_changes(signed_in, mine):
    assert signed_in.get(f"/c/{mine.pk}/delete").status_code == 405


def test_it_needs_a_csrf_token(owner, mine):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert post(client, f"/c/{mine.pk}/delete", {}).status_code == 403
    assert Conversation.objects.filter(pk=mine.pk).exists()


def test_it_sends_anonymous_visitors_to_sign_in(client, mine):
    response = post(client, f"/c/{mine.pk}/delete", {})
    assert response.status_code == 302
    assert Conversation.objects.filter(pk=mine.pk).exists()
