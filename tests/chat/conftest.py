"""A signed-in WebSocket client for /ws/chat/, speaking the protocol of docs/PROTOCOL.md §1."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from chatsite.accounts.keys import api_key_create
from chatsite.asgi import application
from chatsite.chat.models import Conversation, Message


def session_key(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class ChatSocket:
    def __init__(self, cookie: str | None, origin: str = "http://testserver",
                 host: str = "testserver", headers: tuple = ()):
        headers = [(b"host", host.encode()), (b"origin", origin.encode()), *headers]
        if cookie:
            headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
        self.communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)

    async def connect(self) -> bool:
        connected, _ = await self.communicator.connect()
        return connected

    async def send(self, **frame) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def chat(self, content: str, **fields) -> None:
        await self.send(type="chat.send", content=content, **fields)

    async def receive(self, timeout: float = 30) -> dict:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def until_end(self, timeout: float = 30) -> list[dict]:
        """Every envelope up to and including the next inference.end."""
        events = []
        async with asyncio.timeout(timeout):
            while not events or events[-1]["type"] != "inference.end":
                events.append(await self.receive(timeout=timeout))
        return events

    async def close(self) -> None:
        await self.communicator.disconnect()


async def wait_for_status(message_id: int, statuses, within: float):
    """The message once its status is one of `statuses` (or as it is after `within` s)."""
    from chatsite.chat.models import Message

    deadline = asyncio.get_running_loop().time() + within
    while True:
        message = await database_sync_to_async(Message.objects.get)(pk=message_id)
        if message.status in statuses or asyncio.get_running_loop().time() > deadline:
            return message
        await asyncio.sleep(0.05)


async def short_answer(owner):
    """A five-token answer of the owner's on the demo poet, started in this process: its row."""
    from channels.db import database_sync_to_async

    from chatsite.chat.models import Message
    from chatsite.chat.streams.protocol import GenerationParams
    from chatsite.chat.transports import streaming

    exchange, _ = await streaming.start(
        user=owner, conversation_id=None, content="Hello", adapter_slug="demo-poet",
        params=GenerationParams(max_tokens=5, seed=1),
    )
    return await database_sync_to_async(Message.objects.get)(pk=exchange.assistant_message.pk)


def text_of(events: list[dict]) -> str:
    return "".join(e["payload"]["text"] for e in events if e["type"] == "inference.token")


def types_of(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


@pytest.fixture
async def socket_for(demo_adapters):
    """Open a signed-in socket for a user; every socket is closed after the test."""
    sockets = []

    async def open_socket(user, **kwargs) -> ChatSocket:
        cookie = await database_sync_to_async(session_key)(user)
        chat_socket = ChatSocket(cookie, **kwargs)
        assert await chat_socket.connect()
        sockets.append(chat_socket)
        return chat_socket

    yield open_socket
    for chat_socket in sockets:
        await chat_socket.close()


# --- the HTTP APIs, in process, with the owner's key ------------------------------------------
@pytest.fixture
def call(client, owner, demo_adapters):
    """POST or GET with the owner's key; the answer's status and JSON body."""
    _, secret = api_key_create(user=owner)

    def request(path, body=None, method="post", raw=None, key=secret):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
        if method == "get":
            response = client.get(path, **headers)
        else:
            data = raw if raw is not None else json.dumps(body)
            response = client.generic(method.upper(), path, data, "application/json", **headers)
        return response.status_code, response.json() if response.content else None, response

    return request


@pytest.fixture
def conversation(owner):
    return Conversation.objects.create(owner=owner, title="Mine")


def nothing_stored(conversations_before=0):
    return Conversation.objects.count() == conversations_before and not Message.objects.exists()


def chat(**fields):
    return {"model": "demo-poet", "messages": [{"role": "user", "content": "Hi"}], **fields}


def generate(**parameters):
    return {"inputs": "Hello", "parameters": {"adapter_id": "demo-poet", **parameters}}
