"""GET /api/v1/...: each user reads only their own conversations and messages."""

import pytest

from chatsite.chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(owner, demo_adapters):
    conversation = Conversation.objects.create(
        owner=owner, title="Rivers", adapter=demo_adapters["demo-poet"]
    )
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="Tell me about rivers."
    )
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        content="the river runs",
        status=Message.Status.INTERRUPTED,
        finish_reason="interrupted",
        adapter=demo_adapters["demo-poet"],
        prompt_tokens=12,
        completion_tokens=3,
        ttft_ms=5.0,
        total_ms=20.0,
    )
    return conversation


def test_it_lists_only_the_users_own_conversations(client, owner, other_user, conversation):
    Conversation.objects.create(owner=other_user, title="Not yours")
    client.force_login(owner)

    body = client.get("/api/v1/conversations/").json()

    assert [c["title"] for c in body] == ["Rivers"]
    assert body[0]["adapter"] == "demo-poet"


def test_it_shows_each_message_with_status_usage_and_timings(client, owner, conversation):
    client.force_login(owner)

    body = client.get(f"/api/v1/conversations/{conversation.pk}/messages/").json()

    assert [m["role"] for m in body] == ["user", "assistant"]
    answer = body[1]
    assert answer["content"] == "the river runs"
    assert answer["status"] == "interrupted"
    assert answer["finish_reason"] == "interrupted"
    assert answer["adapter"] == "demo-poet"
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 3}
    assert answer["timings"] == {"ttft_ms": 5.0, "total_ms": 20.0}
    assert answer["parent"] == body[0]["id"]


def test_it_answers_404_for_another_users_conversation(client, other_user, conversation):
    client.force_login(other_user)

    response = client.get(f"/api/v1/conversations/{conversation.pk}/messages/")

    assert response.status_code == 404
    assert "river" not in response.content.decode()


def test_it_answers_404_for_a_conversation_that_does_not_exist(client, owner):
    client.force_login(owner)
    assert client.get("/api/v1/conversations/999999/messages/").status_code == 404


def test_it_lists_enabled_adapters_only(client, owner, demo_adapters):
    demo_adapters["demo-chef"].enabled = False
    demo_adapters["demo-chef"].save()
    client.force_login(owner)

    body = client.get("/api/v1/adapters/").json()

    assert sorted(a["slug"] for a in body) == ["demo-poet", "demo-terse"]
    assert set(body[0]) == {"slug", "name", "description"}


@pytest.mark.parametrize(
    "url", ["/api/v1/conversations/", "/api/v1/adapters/", "/api/v1/conversations/1/messages/"]
)
def test_it_refuses_anonymous_callers(client, url):
    response = client.get(url)
    assert response.status_code in (401, 403)
    assert response["Content-Type"] == "application/json"
