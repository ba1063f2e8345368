"""The native SSE stream of an answer that has ended: a client that has the end gets 204 (so
an EventSource stops reconnecting), a saved answer is replayed with the ids its live log gave,
never from 0 again, and a resume that the saved text cannot serve exactly is refused."""

import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from chatsite.accounts.keys import api_key_create
from chatsite.chat.models import Conversation, Message
from chatsite.chat.transports import streaming
from tests.chat.conftest import short_answer


@pytest.fixture
def api(client, owner, demo_adapters):
    _, secret = api_key_create(user=owner)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


@pytest.fixture
def saved_answer(owner):
    """A finished answer whose live log is gone: 58 events, the end's id 57."""
    conversation = Conversation.objects.create(owner=owner)
    return Message.objects.create(
        conversation=conversation, role="assistant", content="the river runs",
        status="complete", finish_reason="stop", end_event_id=57,
    )


def stream(api, answer, last_event_id=None):
    headers = {} if last_event_id is None else {"HTTP_LAST_EVENT_ID": str(last_event_id)}
    return api.get(f"/api/v1/messages/{answer.pk}/stream", **headers)


def frames(response) -> list[dict]:
    async def joined():
        return b"".join([chunk async for chunk in response.streaming_content])

    parsed = []
    for frame in async_to_sync(joined)().decode().strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
        parsed.append(fields)
    return parsed


@pytest.mark.django_db
def test_it_replays_a_saved_answer_with_its_live_ids(api, saved_answer):
    replay = frames(stream(api, saved_answer))

    assert replay[0] == {"retry": "2000"}
    assert [(f["id"], f["event"]) for f in replay[1:]] == [
        ("0", "inference.start"), ("56", "inference.token"), ("57", "inference.end")
    ]
    assert replay[2]["data"]["payload"]["text"] == "the river runs"


@pytest.mark.django_db
def test_it_answers_204_to_a_client_that_has_the_end(api, saved_answer):
    response = stream(api, saved_answer, last_event_id=57)

    assert response.status_code == 204 and response.content == b""


@pytest.mark.django_db
def test_it_sends_only_what_comes_after_last_event_id(api, saved_answer):
    after_token = frames(stream(api, saved_answer, last_event_id=56))
    after_start = frames(stream(api, saved_answer, last_event_id=0))

    assert [f.get("id") for f in after_token] == [None, "57"]
    assert [f.get("id") for f in after_start] == [None, "56", "57"]


@pytest.mark.django_db
def test_it_refuses_a_resume_inside_the_text_once_the_log_is_gone(api, saved_answer):
    response = stream(api, saved_answer, last_event_id=10)

    assert response.status_code == 410
    assert response.json()["code"] == "stream_expired"
    assert f"/api/v1/messages/{saved_answer.pk}/" in response.json()["message"]


@pytest.mark.django_db
def test_it_numbers_an_answer_saved_without_its_ids_from_0_and_ends_it(api, saved_answer):
    Message.objects.filter(pk=saved_answer.pk).update(end_event_id=None)
    saved_answer.refresh_from_db()

    replay = frames(stream(api, saved_answer))

    assert [f["id"] for f in replay[1:]] == ["0", "1", "2"]
    assert stream(api, saved_answer, last_event_id=2).status_code == 204


@pytest.mark.django_db(transaction=True)
async def test_it_saves_the_id_the_live_log_gave_the_end(owner, demo_adapters):
    answer = await short_answer(owner)

    live = [frame async for frame in streaming.native_sse(answer)]

    last_id = int([f for f in live if f.startswith(b"id: ")][-1].split(b"\n")[0][4:])
    saved = await database_sync_to_async(Message.objects.get)(pk=answer.pk)
    assert saved.end_event_id == last_id
    assert (await streaming.native_sse_response(saved, after=last_id)).status_code == 204
