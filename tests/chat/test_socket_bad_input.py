"""Bad frames get a clear error and an end; the socket stays usable and nothing is stored."""

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chatsite.adapters.models import Adapter
from chatsite.chat.models import Message
from tests.chat.conftest import ChatSocket, session_key

pytestmark = [pytest.mark.django_db(transaction=True)]


def error_of(events):
    assert [e["type"] for e in events] == ["inference.error", "inference.end"]
    assert events[1]["payload"]["reason"] == "error"
    return events[0]["payload"]


async def message_count() -> int:
    return await database_sync_to_async(Message.objects.count)()


async def test_it_answers_malformed_json_with_bad_request_and_stays_usable(owner, socket_for):
    socket = await socket_for(owner)
    await socket.communicator.send_to(text_data="{not json")
    error = error_of(await socket.until_end())
    assert error["code"] == "bad_request"
    assert error["message"]

    await socket.chat("Still there?", params={"max_tokens": 3})
    assert (await socket.until_end())[-1]["payload"]["reason"] in ("stop", "length")


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "chat.dance"},
        {"content": "no type"},
        {"type": "chat.send"},
        {"type": "chat.send", "content": 42},
        {"type": "chat.send", "content": "hi", "params": {"temperature": "hot"}},
        {"type": "chat.send", "content": "hi", "params": {"max_tokens": 0}},
        {"type": "chat.send", "content": "hi", "params": {"max_tokens": 10**6}},
        {"type": "chat.send", "content": "hi", "params": {"top_p": 1.5}},
        {"type": "chat.send", "content": "hi", "surprise": True},
        {"type": "chat.stop"},
        ["a", "list"],
    ],
)
async def test_it_rejects_a_bad_frame_with_bad_request(owner, socket_for, frame):
    socket = await socket_for(owner)
    await socket.communicator.send_json_to(frame)
    assert error_of(await socket.until_end())["code"] == "bad_request"
    assert await message_count() == 0


async def test_it_rejects_a_binary_frame(owner, socket_for):
    socket = await socket_for(owner)
    await socket.communicator.send_to(bytes_data=b"\x00\x01")
    assert error_of(await socket.until_end())["code"] == "bad_request"


@pytest.mark.parametrize("content", ["", "   \n  "])
async def test_it_rejects_empty_content(owner, socket_for, content):
    socket = await socket_for(owner)
    await socket.chat(content)
    assert error_of(await socket.until_end())["code"] == "invalid_content"
    assert await message_count() == 0


async def test_it_rejects_content_over_the_limit(owner, socket_for):
    socket = await socket_for(owner)
    with override_settings(MAX_PROMPT_CHARS=100):
        await socket.chat("x" * 101)
        error = error_of(await socket.until_end())
    assert error["code"] == "invalid_content"
    assert "100" in error["message"]
    assert await message_count() == 0


async def test_it_rejects_an_unknown_adapter(owner, socket_for):
    socket = await socket_for(owner)
    await socket.chat("hi", adapter="no-such-adapter")
    assert error_of(await socket.until_end())["code"] == "unknown_adapter"
    assert await message_count() == 0


async def test_it_treats_a_disabled_adapter_as_unknown(owner, socket_for):
    await database_sync_to_async(Adapter.objects.filter(slug="demo-chef").update)(enabled=False)
    socket = await socket_for(owner)
    await socket.chat("hi", adapter="demo-chef")
    assert error_of(await socket.until_end())["code"] == "unknown_adapter"


async def test_it_answers_another_users_conversation_as_not_found(owner, other_user, socket_for):
    socket = await socket_for(owner)
    await socket.chat("mine", params={"max_tokens": 2})
    conversation = (await socket.until_end())[0]["payload"]["conversation"]

    intruder = await socket_for(other_user)
    await intruder.chat("let me in", conversation=conversation)
    assert error_of(await intruder.until_end())["code"] == "not_found"
    assert await message_count() == 2


async def test_it_refuses_a_handshake_without_a_session(demo_adapters):
    socket = ChatSocket(cookie=None)
    assert not await socket.connect()


async def test_it_refuses_a_handshake_from_a_foreign_origin(owner, demo_adapters):
    cookie = await database_sync_to_async(session_key)(owner)
    socket = ChatSocket(cookie, origin="http://evil.example")
    assert not await socket.connect()
