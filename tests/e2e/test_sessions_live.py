"""Sessions and origins against a real Daphne: a page of another port cannot open the socket,
an open socket ends with its session, and a revoked API key ends the streams it opened."""

import asyncio
import json
import threading
import time

import pytest
import requests
import websockets

from tests.e2e.clients import Account, open_socket, socket_url
from tests.e2e.servers import local_deployment, sign_up
from tests.holding import HELD, HELD_TOKENS
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e

SESSION_ENDED = 4401
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def base_url(demo_model, tmp_path_factory):
    with local_deployment(tmp_path_factory.mktemp("sessions"), TEST_MODEL_DIR,
                          STREAM_RESUME_GRACE_S="30") as url:
        yield url


def form_post(session, base_url: str, path: str, **fields) -> requests.Response:
    return session.post(
        f"{base_url}{path}",
        data={"csrfmiddlewaretoken": session.cookies["csrftoken"], **fields},
        headers={"Referer": f"{base_url}{path}"},
        allow_redirects=False,
    )


async def closed_with(socket, within: float = 30):
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(within):
            while True:
                await socket.recv()
    return closed.value.rcvd


# --- origins --------------------------------------------------------------------------------
async def test_it_refuses_a_handshake_from_a_page_on_another_port_of_the_same_host(base_url):
    session = sign_up(base_url, "origin-alice")
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    host, port = base_url.removeprefix("http://").split(":")
    foreign = f"http://{host}:{int(port) + 1}"

    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(socket_url(base_url), origin=foreign,
                                 additional_headers={"Cookie": cookie})
    assert refused.value.response.status_code == 403
    async with await open_socket(base_url, session):
        pass  # the site's own origin still opens it


# --- an open socket ends with its session ---------------------------------------------------
async def test_it_closes_an_open_socket_when_its_session_logs_out(base_url):
    session = sign_up(base_url, "logout-alice")
    socket = await open_socket(base_url, session)

    assert form_post(session, base_url, "/accounts/logout/").status_code == 302

    # Only the code: Daphne 4.2 does not pass the consumer's close reason on.
    assert (await closed_with(socket)).code == SESSION_ENDED


async def test_it_closes_an_open_socket_when_the_password_changes(base_url):
    session = sign_up(base_url, "password-alice")
    socket = await open_socket(base_url, session)

    changed = form_post(session, base_url, "/accounts/password_change/", old_password=PASSWORD,
                        new_password1="a new long phrase", new_password2="a new long phrase")

    assert changed.status_code == 302, changed.text
    assert (await closed_with(socket)).code == SESSION_ENDED


# --- a revoked key ends its streams ---------------------------------------------------------
def latest_answer_id(account) -> int:
    """Once the call has recorded its answer (read with the user's session: the key may go)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conversations = account.session.get(f"{account.base_url}/api/v1/conversations/").json()
        if conversations:
            messages = account.session.get(
                f"{account.base_url}/api/v1/conversations/{conversations[0]['id']}/messages/"
            ).json()
            if len(messages) == 2:
                return messages[-1]["id"]
        time.sleep(0.05)
    raise AssertionError("the call recorded no answer")


def saved_status(account, message_id: int, statuses=("complete", "stopped", "interrupted")) -> str:
    deadline = time.monotonic() + 60
    while True:
        status = account.session.get(f"{account.base_url}/api/v1/messages/{message_id}/").json()["status"]
        if status in statuses or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def data_lines(response):
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            yield line.removeprefix("data: ")


def test_it_ends_an_openai_stream_and_stops_its_answer_when_its_key_is_revoked(base_url):
    account = Account(base_url, "revoke-openai")
    body = {"model": "demo-poet", "messages": [{"role": "user", "content": "On"}],
            "stream": True, **HELD}
    with requests.post(f"{base_url}/v1/chat/completions", json=body, headers=account.headers,
                       stream=True, timeout=60) as response:
        lines = data_lines(response)
        for _ in range(3):
            next(lines)  # the answer is under way
        account.revoke_key()
        rest = list(lines)

    errors = [json.loads(line)["error"] for line in rest if '"error"' in line]
    assert errors and errors[0]["code"] == "key_revoked"
    assert rest[-1] == "[DONE]"
    assert saved_status(account, latest_answer_id(account)) == "stopped"


def test_it_ends_a_lorax_stream_when_its_key_is_revoked(base_url):
    account = Account(base_url, "revoke-lorax")
    body = {"inputs": "Once", "parameters": {"max_new_tokens": HELD_TOKENS,
                                             "ignore_eos_token": True}}
    with requests.post(f"{base_url}/lorax/generate_stream", json=body, headers=account.headers,
                       stream=True, timeout=60) as response:
        lines = data_lines(response)
        for _ in range(3):
            next(lines)
        account.revoke_key()
        rest = [json.loads(line) for line in lines]

    assert rest[-1]["error_type"] == "authentication" and "revoked" in rest[-1]["error"]
    assert saved_status(account, latest_answer_id(account)) == "stopped"


def test_it_answers_a_waiting_openai_call_401_when_its_key_is_revoked(base_url):
    account = Account(base_url, "revoke-waiting")
    body = {"model": "base", "messages": [{"role": "user", "content": "Long"}], **HELD}
    answers = []
    call = threading.Thread(target=lambda: answers.append(requests.post(
        f"{base_url}/v1/chat/completions", json=body, headers=account.headers, timeout=60)))
    call.start()
    saved_status(account, latest_answer_id(account), statuses=("streaming",))
    account.revoke_key()
    call.join(timeout=60)

    assert answers[0].status_code == 401 and answers[0].json()["error"]["code"] == "key_revoked"


def test_it_ends_a_native_sse_stream_opened_with_a_revoked_key(base_url):
    account = Account(base_url, "revoke-native")
    conversation = account.post("/api/v1/conversations/", {}).json()["id"]
    sent = account.post(f"/api/v1/conversations/{conversation}/messages/",
                        {"content": "Long", "parameters": HELD}).json()
    with account.get(sent["stream"], stream=True) as response:
        lines = data_lines(response)
        for _ in range(3):
            next(lines)
        account.revoke_key()
        rest = [json.loads(line) for line in lines]

    assert rest[-1]["type"] == "inference.error" and rest[-1]["payload"]["code"] == "key_revoked"
