"""The chat page at / and /c/<id>/: signed-in users only, their own conversations only."""

import pytest

from chatsite.chat.models import Conversation

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_shows_the_chat_page_with_the_adapter_picker(client, owner, demo_adapters):
    client.force_login(owner)
    page = client.get("/").content.decode()
    assert 'data-testid="adapter-picker"' in page
    assert "demo-poet" in page


def test_it_opens_the_users_own_conversation(client, owner):
    conversation = Conversation.objects.create(owner=owner, title="Mine")
    client.force_login(owner)
    assert client.get(f"/c/{conversation.pk}/").status_code == 200


def test_it_answers_404_for_another_users_conversation_page(client, owner, other_user):
    conversation = Conversation.objects.create(owner=owner, title="Secret plans")
    client.force_login(other_user)
    response = client.get(f"/c/{conversation.pk}/")
    assert response.status_code == 404
    assert "Secret plans" not in response.content.decode()


def test_it_sends_a_content_security_policy_without_inline_script(client, owner):
    client.force_login(owner)
    policy = client.get("/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy


def test_it_loads_the_bundled_script_and_no_inline_script(client, owner):
    client.force_login(owner)
    page = client.get("/").content.decode()
    assert '<script type="module" src="/static/patchbay.js">' in page
    assert "<script>" not in page
