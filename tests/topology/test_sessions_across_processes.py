"""Celery mode with two web processes on one Redis: a session or a key ended through one of
them ends the socket or the stream held by the other (the channel layer is Redis there)."""

import asyncio
import json
import time

import pytest
import requests
import websockets

from tests.e2e.clients import Account, open_socket
from tests.e2e.servers import daphne
from tests.holding import HELD
from tests.topology.conftest import deployment

pytestmark = [pytest.mark.e2e, pytest.mark.services]

SESSION_ENDED = 4401


@pytest.fixture(scope="module")
def two_web_processes(demo_model, tmp_path_factory):
    """(the stack's own Daphne, a second one beside it)."""
    tmp_path = tmp_path_factory.mktemp("two-webs")
    with deployment(tmp_path) as stack:
        with daphne(stack.env, tmp_path / "daphne-2.log") as second_url:
            yield stack.base_url, second_url


async def test_it_closes_a_socket_held_by_another_web_process_on_logout(two_web_processes):
    first, second = two_web_processes
    account = Account(first, "across-logout")
    socket = await open_socket(second, account.session)

    logout = account.session.post(
        f"{first}/accounts/logout/",
        data={"csrfmiddlewaretoken": account.session.cookies["csrftoken"]},
        headers={"Referer": f"{first}/"}, allow_redirects=False,
    )

    assert logout.status_code == 302
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(30):
            while True:
                await socket.recv()
    assert closed.value.rcvd.code == SESSION_ENDED


def test_it_ends_a_stream_held_by_another_web_process_when_its_key_is_revoked(two_web_processes):
    first, second = two_web_processes
    account = Account(first, "across-revoke")
    body = {"model": "demo-poet", "messages": [{"role": "user", "content": "On"}],
            "stream": True, **HELD}
    with requests.post(f"{second}/v1/chat/completions", json=body, headers=account.headers,
                       stream=True, timeout=60) as response:
        lines = (line for line in response.iter_lines(decode_unicode=True) if line.startswith("data: "))
        for _ in range(3):
            next(lines)
        account.revoke_key()  # through the first process
        rest = [line.removeprefix("data: ") for line in lines]

    errors = [json.loads(line)["error"] for line in rest if '"error"' in line]
    assert errors and errors[0]["code"] == "key_revoked"
    conversation = account.session.get(f"{first}/api/v1/conversations/").json()[0]["id"]
    answer = account.session.get(f"{first}/api/v1/conversations/{conversation}/messages/").json()[-1]
    assert saved_status(account, first, answer["id"]) == "stopped"


def saved_status(account: Account, base_url: str, message_id: int) -> str:
    deadline = time.monotonic() + 60
    while True:
        status = account.session.get(f"{base_url}/api/v1/messages/{message_id}/").json()["status"]
        if status not in ("pending", "streaming") or time.monotonic() > deadline:
            return status
        time.sleep(0.1)
