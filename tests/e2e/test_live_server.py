"""A real Daphne process, a real WebSocket: sign up, stream an answer, cut one off."""

import asyncio
import json
import time

import pytest
import websockets

from tests.e2e.clients import messages, open_socket, socket_url, until_end
from tests.e2e.servers import local_deployment, sign_up
from tests.holding import HELD
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_server_url(demo_model, tmp_path_factory):
    with local_deployment(tmp_path_factory.mktemp("live"), TEST_MODEL_DIR) as base_url:
        yield base_url


def test_it_streams_an_answer_that_the_read_api_then_shows_complete(live_server_url):
    session = sign_up(live_server_url, "erin")

    async def chat():
        async with await open_socket(live_server_url, session) as ws:
            await ws.send(json.dumps({"type": "chat.send", "conversation": None,
                                      "content": "Hello!", "adapter": "demo-poet",
                                      "params": {"max_tokens": 30, "seed": 1}}))
            return await until_end(ws)

    events = asyncio.run(chat())
    streamed = "".join(e["payload"]["text"] for e in events if e["type"] == "inference.token")
    answer = messages(session, live_server_url, events[0]["payload"]["conversation"])[-1]
    assert answer["status"] == "complete"
    assert answer["content"] == streamed
    assert answer["adapter"] == "demo-poet"


def test_it_keeps_the_text_when_the_tab_closes_mid_answer(live_server_url):
    session = sign_up(live_server_url, "frank")

    async def chat_and_leave():
        ws = await open_socket(live_server_url, session)
        await ws.send(json.dumps({"type": "chat.send", "content": "A long story, please.",
                                  "params": HELD}))
        start = json.loads(await ws.recv())
        tokens = [json.loads(await ws.recv()) for _ in range(3)]
        await ws.close()
        return start, "".join(t["payload"]["text"] for t in tokens)

    start, seen = asyncio.run(chat_and_leave())
    deadline = time.monotonic() + 30
    while True:
        answer = messages(session, live_server_url, start["payload"]["conversation"])[-1]
        if answer["status"] == "interrupted" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert answer["status"] == "interrupted"
    assert answer["content"].startswith(seen)


def test_it_refuses_a_socket_without_a_session(live_server_url):
    async def connect_anonymously():
        async with websockets.connect(socket_url(live_server_url), origin=live_server_url) as ws:
            await ws.recv()

    with pytest.raises(websockets.exceptions.WebSocketException):
        asyncio.run(connect_anonymously())


def test_it_answers_404_for_another_users_conversation(live_server_url):
    owner = sign_up(live_server_url, "gina")
    stranger = sign_up(live_server_url, "hugo")

    async def chat():
        async with await open_socket(live_server_url, owner) as ws:
            await ws.send(json.dumps({"type": "chat.send", "content": "private",
                                      "params": {"max_tokens": 3}}))
            return await until_end(ws)

    conversation = asyncio.run(chat())[0]["payload"]["conversation"]
    response = stranger.get(f"{live_server_url}/api/v1/conversations/{conversation}/messages/")
    assert response.status_code == 404
