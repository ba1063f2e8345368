"""Every envelope a transport sends is one of the declared outbound types
(chatsite/chat/protocol.py), with no field they do not declare: over the socket, over native SSE
and in the replay of a saved answer. The end carries the answer's saved status."""

import json

import pytest
from channels.db import database_sync_to_async
from pydantic import ValidationError

from chatsite.chat.transports import streaming
from chatsite.chat.workers import local_run
from chatsite.chat.models import Message
from chatsite.chat.streams.protocol import validate_envelope
from chatsite.chat.conversations.selectors import can_continue

pytestmark = [pytest.mark.django_db(transaction=True)]

PARAMS = {"temperature": 0, "seed": 3, "max_tokens": 8}


@database_sync_to_async
def saved(message_id: int) -> Message:
    return Message.objects.select_related("adapter").get(pk=message_id)


def sse_envelopes(frames: list[bytes]) -> list[dict]:
    return [
        json.loads(frame.split(b"data: ", 1)[1])
        for frame in frames if b"\ndata: " in frame
    ]


async def test_it_sends_only_declared_envelopes_over_the_socket_sse_and_replay(owner, socket_for):
    socket = await socket_for(owner)
    await socket.send(type="chat.send", content="Hi", params={"max_tokens": 0})  # refused
    refused = await socket.until_end()
    await socket.chat("Tell me about rivers.", adapter="demo-poet", params=PARAMS)
    live = await socket.until_end()
    answer = await saved(live[0]["payload"]["message"])

    sse = sse_envelopes([frame async for frame in streaming.native_sse(answer)])
    local_run._runs.pop(answer.pk)  # the log is gone: the saved answer stands in
    await socket.send(type="chat.follow", message=answer.pk, resume=None)
    replayed = await socket.until_end()

    for envelope in refused + live + sse + replayed:
        validate_envelope(envelope)
    assert sse == live and [e["type"] for e in refused] == ["inference.error", "inference.end"]
    assert [e["type"] for e in replayed] == ["inference.start", "inference.token", "inference.end"]
    for end in (live[-1], sse[-1], replayed[-1]):
        assert end["payload"]["status"] == answer.status == Message.Status.COMPLETE


def test_it_refuses_an_envelope_with_a_field_it_does_not_declare():
    token = {"type": "inference.token", "payload": {"message": 1, "text": "a", "index": 0}}
    validate_envelope(token)

    with pytest.raises(ValidationError):
        validate_envelope({**token, "payload": {**token["payload"], "seq": 4}})
    with pytest.raises(ValidationError):
        validate_envelope({"type": "inference.end", "payload": {"message": 1, "reason": "stop"}})


async def test_it_saves_and_shows_an_answer_cut_by_the_time_cap_alike_everywhere(
    owner, socket_for, settings
):
    settings.STREAM_MAX_DURATION_S = 0.05
    socket = await socket_for(owner)
    await socket.chat("Tell me about rivers.", params={"max_tokens": 2000, "ignore_eos": True})
    events = await socket.until_end(timeout=60)
    answer = await saved(events[0]["payload"]["message"])

    assert events[-1]["payload"]["reason"] == answer.finish_reason == "timeout"
    assert events[-1]["payload"]["status"] == answer.status == Message.Status.COMPLETE
    assert answer.content and await database_sync_to_async(can_continue)(answer)
