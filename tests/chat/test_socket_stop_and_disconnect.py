"""A cut stream keeps the text generated so far, with an honest status."""

import pytest
from channels.db import database_sync_to_async

from chatsite.chat.models import Message
from tests.chat.conftest import text_of, wait_for_status
from tests.holding import HELD

pytestmark = [pytest.mark.django_db(transaction=True)]

LONG = HELD


@database_sync_to_async
def saved(message_id: int) -> Message:
    return Message.objects.get(pk=message_id)


async def first_tokens(socket, count: int) -> tuple[int, str]:
    start = await socket.receive()
    assert start["type"] == "inference.start"
    tokens = [await socket.receive() for _ in range(count)]
    assert all(t["type"] == "inference.token" for t in tokens), tokens
    return start["payload"]["message"], "".join(t["payload"]["text"] for t in tokens)


async def test_it_marks_the_answer_interrupted_when_the_socket_closes(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Tell me a very long story.", params=LONG)
    message_id, seen = await first_tokens(socket, 3)

    await socket.close()

    answer = await wait_for_status(message_id, {Message.Status.INTERRUPTED}, within=30)
    assert answer.status == Message.Status.INTERRUPTED
    assert answer.finish_reason == "interrupted"
    assert answer.content.startswith(seen)
    assert (answer.completion_tokens or 0) < LONG["max_tokens"]


async def test_it_stops_on_chat_stop_and_keeps_exactly_the_streamed_text(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Tell me a very long story.", params=LONG)
    message_id, _ = await first_tokens(socket, 3)

    await socket.send(type="chat.stop", message=message_id)
    rest = await socket.until_end()

    assert rest[-1]["payload"]["reason"] == "cancelled"
    answer = await saved(message_id)
    assert answer.status == Message.Status.STOPPED
    assert answer.finish_reason == "cancelled"
    assert answer.content.endswith(text_of(rest))
    assert answer.completion_tokens < LONG["max_tokens"]


async def test_it_ignores_a_stop_for_another_users_message(owner, other_user, socket_for):
    socket = await socket_for(owner)
    intruder = await socket_for(other_user)
    await socket.chat("Tell me a story.", params={"temperature": 0, "max_tokens": 40})
    message_id, _ = await first_tokens(socket, 1)

    await intruder.send(type="chat.stop", message=message_id)
    refusal = await intruder.until_end()
    events = await socket.until_end()

    assert refusal[0]["payload"]["code"] == "not_found"
    assert events[-1]["payload"]["reason"] in ("stop", "length")


async def test_it_never_leaves_a_message_streaming_after_its_end(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Short one", params={"max_tokens": 5, "temperature": 0})
    events = await socket.until_end()

    answer = await saved(events[0]["payload"]["message"])
    assert answer.status not in Message.LIVE_STATUSES
