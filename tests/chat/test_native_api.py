"""/api/v1/: conversations and messages by key or session, and the SSE stream's framing."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from chatsite.accounts.keys import api_key_create
from chatsite.chat.models import Conversation, Message
from chatsite.chat.transports import streaming
from tests.chat.conftest import short_answer


async def joined(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


@pytest.fixture
def api(client, owner, demo_adapters):
    _, secret = api_key_create(user=owner)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


@pytest.mark.django_db
def test_it_creates_reads_renames_and_deletes_a_conversation(api, owner):
    created = api.post(
        "/api/v1/conversations/",
        {"title": "Plans", "adapter": "demo-terse", "system_prompt": "Be short."},
        content_type="application/json",
    )
    assert created.status_code == 201
    conversation = created.json()
    assert conversation["adapter"] == "demo-terse"
    url = f"/api/v1/conversations/{conversation['id']}/"

    assert api.get(url).json()["title"] == "Plans"
    renamed = api.patch(url, {"title": "Trips"}, content_type="application/json")
    assert renamed.json()["title"] == "Trips"
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert not Conversation.objects.filter(owner=owner).exists()


@pytest.mark.django_db
def test_it_reads_one_message(api, owner):
    conversation = Conversation.objects.create(owner=owner)
    message = Message.objects.create(conversation=conversation, role="user", content="Hi")

    body = api.get(f"/api/v1/messages/{message.pk}/").json()

    assert body["content"] == "Hi" and body["conversation"] == conversation.pk


@pytest.mark.django_db
def test_it_replays_a_finished_answer_from_the_saved_text(api, owner):
    conversation = Conversation.objects.create(owner=owner)
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="the river runs",
        status="complete",
        finish_reason="stop",
        prompt_tokens=3,
        completion_tokens=3,
    )

    response = api.get(f"/api/v1/messages/{answer.pk}/stream")
    text = async_to_sync(joined)(response.streaming_content).decode()

    assert response["Content-Type"] == "text/event-stream"
    assert text.startswith("retry: 2000\n\nid: 0\nevent: inference.start\ndata: {")
    assert '"text":"the river runs"' in text
    assert text.rstrip().split("\n")[-2] == "event: inference.end"


@pytest.mark.django_db
def test_it_streams_to_a_client_that_accepts_only_event_streams(api, owner):
    """EventSource and most SSE libraries send `Accept: text/event-stream`."""
    conversation = Conversation.objects.create(owner=owner)
    answer = Message.objects.create(
        conversation=conversation, role="assistant", content="ok", status="complete",
        finish_reason="stop",
    )

    response = api.get(f"/api/v1/messages/{answer.pk}/stream", HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert '"text":"ok"' in async_to_sync(joined)(response.streaming_content).decode()
    missing = api.get("/api/v1/messages/999999/stream", HTTP_ACCEPT="text/event-stream")
    assert missing.status_code == 404
    assert missing.content.startswith(b'data: {"code":"not_found"')


@pytest.mark.django_db
def test_it_keeps_the_old_read_shapes_for_session_callers(client, owner, demo_adapters):
    client.force_login(owner)
    assert client.get("/api/v1/adapters/").json()[0].keys() == {"slug", "name", "description"}


@pytest.mark.django_db(transaction=True)
async def test_it_frames_events_with_ids_and_keeps_the_connection_alive(
    owner, demo_adapters, monkeypatch
):
    monkeypatch.setattr(streaming, "KEEPALIVE_S", 0.001)
    answer = await short_answer(owner)

    frames = [frame async for frame in streaming.native_sse(answer)]

    assert frames[0] == b"retry: 2000\n\n"
    events = [f for f in frames[1:] if not f.startswith(b":")]
    assert b": keep-alive\n\n" in frames
    assert [f.split(b"\n")[0] for f in events] == [f"id: {i}".encode() for i in range(len(events))]
    assert events[-1].split(b"\n")[1] == b"event: inference.end"
    saved = await database_sync_to_async(Message.objects.get)(pk=answer.pk)
    assert saved.status == "complete"


@pytest.mark.django_db
def test_it_streams_and_stops_only_answers(api, owner):
    conversation = Conversation.objects.create(owner=owner)
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")

    assert api.get(f"/api/v1/messages/{question.pk}/stream").status_code == 404
    assert api.post(f"/api/v1/messages/{question.pk}/stop").status_code == 404
