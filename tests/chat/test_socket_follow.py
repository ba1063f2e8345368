"""chat.follow: a reloaded page or a second tab picks up an answer, without gaps or repeats."""

import pytest
from channels.db import database_sync_to_async

from chatsite.chat.models import Message
from chatsite.chat.workers import local_run
from tests.chat.conftest import text_of, types_of, wait_for_status
from tests.holding import HELD

pytestmark = [pytest.mark.django_db(transaction=True)]

LONG = {"temperature": 0.8, "seed": 11, "max_tokens": 60}


async def start_and_read(socket, count: int, params=LONG) -> tuple[int, list[dict]]:
    await socket.chat("Tell me a story.", params=params)
    events = [await socket.receive() for _ in range(count + 1)]
    return events[0]["payload"]["message"], events


async def test_it_lets_a_second_socket_follow_a_live_answer_from_the_start(owner, socket_for):
    first = await socket_for(owner)
    second = await socket_for(owner)
    message_id, _ = await start_and_read(first, 1)

    await second.send(type="chat.follow", message=message_id, resume=None)
    followed = await second.until_end()
    await first.until_end()

    saved = await database_sync_to_async(Message.objects.get)(pk=message_id)
    assert followed[0]["type"] == "inference.start"
    assert text_of(followed) == saved.content


async def test_it_resumes_after_the_last_event_seen_without_gap_or_duplicate(
    owner, socket_for, settings
):
    settings.STREAM_RESUME_GRACE_S = 5
    first = await socket_for(owner)
    message_id, seen = await start_and_read(first, 3)
    await first.close()

    again = await socket_for(owner)
    await again.send(type="chat.follow", message=message_id, resume=len(seen) - 1)
    rest = await again.until_end()

    saved = await database_sync_to_async(Message.objects.get)(pk=message_id)
    assert "inference.start" not in types_of(rest)
    assert text_of(seen) + text_of(rest) == saved.content
    assert saved.status == Message.Status.COMPLETE


async def test_it_cancels_when_nobody_comes_back_within_the_grace_period(
    owner, socket_for, settings
):
    settings.STREAM_RESUME_GRACE_S = 0.3
    first = await socket_for(owner)
    message_id, seen = await start_and_read(first, 2, params=HELD)
    await first.close()

    saved = await wait_for_status(message_id, {Message.Status.INTERRUPTED}, within=30)
    assert saved.status == Message.Status.INTERRUPTED
    assert saved.content.startswith(text_of(seen))


async def test_it_replays_the_saved_answer_when_the_log_is_gone(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Hello", params={"max_tokens": 8, "temperature": 0})
    events = await socket.until_end()
    message_id = events[0]["payload"]["message"]
    local_run._runs.pop(message_id, None)

    await socket.send(type="chat.follow", message=message_id, resume=None)
    replay = await socket.until_end()

    assert types_of(replay)[0] == "inference.start"
    assert text_of(replay) == text_of(events)
    assert replay[-1]["payload"]["reason"] == events[-1]["payload"]["reason"]


async def test_it_answers_not_found_for_another_users_message(owner, other_user, socket_for):
    socket = await socket_for(owner)
    await socket.chat("mine", params={"max_tokens": 4})
    message_id = (await socket.until_end())[0]["payload"]["message"]

    intruder = await socket_for(other_user)
    await intruder.send(type="chat.follow", message=message_id, resume=None)
    refusal = await intruder.until_end()
    assert refusal[0]["payload"]["code"] == "not_found"
