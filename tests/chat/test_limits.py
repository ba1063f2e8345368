"""Per-user limits hold on the socket and the page's actions as on the APIs
(chatsite/chat/conversations/limits.py): the live-answer cap and the rate limit answer with an error event
and keep the socket open; deleting a conversation stops the answers it was generating.
(The simultaneous burst across transports is tests/e2e/test_limits_burst.py.)"""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.test import AsyncClient, override_settings

from chatsite.accounts.keys import api_key_create
from chatsite.chat.models import Conversation, Message
from tests.chat.conftest import wait_for_status
from tests.holding import HELD

# A day's window: a test never straddles its end (a minute's could, now and then).
THREE_A_DAY = "3/day"


async def next_event(socket, kind: str, message: int | None = None, timeout: float = 60):
    """The next envelope of type `kind` (for answer `message`, if given), skipping others."""
    async with asyncio.timeout(timeout):
        while True:
            event = await socket.receive(timeout=timeout)
            payload = event["payload"]
            mine = message is None or message in (payload.get("message"), payload.get("message_id"))
            if event["type"] == kind and mine:
                return event


async def held_answer(socket) -> int:
    await socket.chat("Tell me a very long story.", params=HELD)
    return (await next_event(socket, "inference.start"))["payload"]["message"]


async def stop_all(socket, *messages: int) -> None:
    """End held answers before the test's event loop closes (their runs live on it)."""
    for message in messages:
        await socket.send(type="chat.stop", message=message)
        await next_event(socket, "inference.end", message)
        await wait_for_status(message, {Message.Status.STOPPED}, within=30)


async def refusal(socket) -> dict:
    error = await next_event(socket, "inference.error")
    end = await next_event(socket, "inference.end", None)
    assert end["payload"]["message"] is None and end["payload"]["reason"] == "error"
    return error["payload"]


@database_sync_to_async
def live_answers() -> int:
    return Message.objects.filter(status__in=Message.LIVE_STATUSES).count()


# --- live-answer cap on the socket ----------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@override_settings(MAX_LIVE_ANSWERS=2)
async def test_it_caps_live_answers_on_the_socket_and_keeps_it_open(owner, socket_for):
    socket = await socket_for(owner)
    first = await held_answer(socket)
    second = await held_answer(socket)

    await socket.chat("One more", params={"max_tokens": 2})
    error = await refusal(socket)
    assert error["code"] == "too_many_streams" and "2 answers" in error["message"]
    assert await live_answers() == 2

    await stop_all(socket, first)
    third = await held_answer(socket)  # a slot is free again, on the same socket
    assert third != first
    await stop_all(socket, second, third)


@pytest.mark.django_db(transaction=True)
@override_settings(MAX_LIVE_ANSWERS=1)
async def test_it_counts_regenerate_and_continue_against_the_cap(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("Short", params={"max_tokens": 2})
    done = (await next_event(socket, "inference.end"))["payload"]["message"]
    held = await held_answer(socket)

    await socket.send(type="chat.regenerate", message=done)
    assert (await refusal(socket))["code"] == "too_many_streams"
    await socket.send(type="chat.continue", message=done)
    assert (await refusal(socket))["code"] == "too_many_streams"
    await stop_all(socket, held)


# --- rate limit on the socket and the page's actions ----------------------------------------
@pytest.mark.django_db(transaction=True)
@override_settings(RATE_LIMIT=THREE_A_DAY)
async def test_it_rate_limits_socket_frames_with_an_error_event_and_keeps_it_open(
    owner, socket_for
):
    socket = await socket_for(owner)
    for _ in range(3):
        await socket.chat("Hi", params={"max_tokens": 1})
        await next_event(socket, "inference.end")

    await socket.chat("Hi", params={"max_tokens": 1})
    error = await refusal(socket)
    assert error["code"] == "rate_limited" and "seconds" in error["message"]
    assert await database_sync_to_async(Message.objects.count)() == 6  # three exchanges

    await socket.send(type="chat.stop", message=10**12)  # Stop is never refused: it frees
    assert (await refusal(socket))["code"] == "not_found"

    await database_sync_to_async(cache.clear)()  # the window has passed
    await socket.chat("Hi again", params={"max_tokens": 1})
    assert (await next_event(socket, "inference.end"))["payload"]["reason"] in ("stop", "length")


@pytest.mark.django_db
@override_settings(RATE_LIMIT=THREE_A_DAY)
def test_it_rate_limits_page_actions_in_one_budget_with_the_apis(client, owner):
    conversation = Conversation.objects.create(owner=owner, title="Mine")
    _, secret = api_key_create(user=owner)
    client.force_login(owner)
    for title in ("One", "Two"):
        response = client.post(
            f"/c/{conversation.pk}/rename", {"title": title}, content_type="application/json"
        )
        assert response.status_code == 200
    assert client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200

    response = client.post(
        f"/c/{conversation.pk}/rename", {"title": "Three"}, content_type="application/json"
    )

    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "rate_limited"
    conversation.refresh_from_db()
    assert conversation.title == "Two"


# --- deleting a conversation stops its answers ----------------------------------------------
@pytest.mark.django_db(transaction=True)
@override_settings(MAX_LIVE_ANSWERS=1)
@pytest.mark.parametrize("how", ["page action", "native api"])
async def test_it_stops_a_live_answer_when_its_conversation_is_deleted(owner, socket_for, how):
    socket = await socket_for(owner)
    await socket.chat("Tell me a very long story.", params=HELD)
    start = (await next_event(socket, "inference.start"))["payload"]
    await next_event(socket, "inference.token", start["message"])
    client = AsyncClient()
    await client.aforce_login(owner)

    if how == "page action":
        response = await client.post(
            f"/c/{start['conversation']}/delete", {}, content_type="application/json"
        )
        assert response.status_code == 200
    else:
        response = await client.delete(f"/api/v1/conversations/{start['conversation']}/")
        assert response.status_code == 204

    end = await next_event(socket, "inference.end", start["message"])
    assert end["payload"]["reason"] == "cancelled"
    assert end["payload"]["usage"]["completion_tokens"] < HELD["max_tokens"]
    assert await live_answers() == 0
    # The deleted answer no longer holds the user's one slot.
    await stop_all(socket, await held_answer(socket))
