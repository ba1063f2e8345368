"""Hostile clients against a real Daphne (DEBUG=1, as a developer runs it), on an SQLite file
and on PostgreSQL: a simultaneous burst of one user's answers across every transport (socket,
native, OpenAI and LoRAX APIs) never gets past MAX_LIVE_ANSWERS, and hostile JSON is refused
at once in each transport's shape (it used to reach a 500 whose debug page took 13-35 s of CPU).
"""

import asyncio
import json
import os
import time

import aiohttp
import pytest
import requests
import websockets

from tests.conftest import require_service
from tests.e2e.clients import Account, socket_url
from tests.e2e.servers import POSTGRES_URL, is_postgres, local_deployment
from tests.holding import HELD, HELD_TOKENS
from tests.settings import TEST_MODEL_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CAP = 3
EACH = 4  # requests per transport: 16 in all against a cap of 3


# When DATABASE_URL names PostgreSQL (as in CI) the default database is PostgreSQL already: one
# deployment serves both.
DATABASES = ["postgres"] if is_postgres(os.environ.get("DATABASE_URL", "")) else [
    "default database", "postgres"]


@pytest.fixture(scope="module", params=DATABASES)
def base_url(request, demo_model, tmp_path_factory):
    """An SQLite file (PostgreSQL when DATABASE_URL names one), then PostgreSQL."""
    postgres = request.param == "postgres"
    if postgres:
        require_service("PostgreSQL", POSTGRES_URL)
    with local_deployment(
        tmp_path_factory.mktemp("burst"), TEST_MODEL_DIR, postgres=postgres,
        MAX_LIVE_ANSWERS=str(CAP), RATE_LIMIT="100000/minute",
    ) as url:
        yield url


class Burst:
    """One user's requests, each held open once accepted so its answer stays live."""

    def __init__(self, account: Account):
        self.account = account
        self.open = []  # responses and sockets to close at the end
        self.refusals: list[tuple[str, int, dict]] = []
        self.accepted = 0
        self.unfollowed: list[int] = []

    def _keep(self, transport: str, status: int, body: dict | None, handle) -> None:
        if status in (200, 201):
            self.accepted += 1
        else:
            self.refusals.append((transport, status, body))
        self.open.append(handle)

    async def native(self, http, conversation: int) -> None:
        response = await http.post(
            f"/api/v1/conversations/{conversation}/messages/",
            json={"content": "Tell me a long story.", "parameters": HELD},
        )
        body = await response.json()
        self._keep("native", response.status, body, response)
        if response.status == 201:  # followed by nobody: stopped at the end
            self.unfollowed.append(body["message"])

    async def openai(self, http) -> None:
        response = await http.post("/v1/chat/completions", json={
            "model": "demo-poet", "stream": True, "temperature": 0, "ignore_eos": True,
            "max_tokens": HELD_TOKENS, "messages": [{"role": "user", "content": "A long story"}],
        })
        body = None if response.status == 200 else await response.json()
        self._keep("openai", response.status, body, response)

    async def lorax(self, http) -> None:
        response = await http.post("/lorax/generate_stream", json={
            "inputs": "Once upon a time",
            "parameters": {"max_new_tokens": HELD_TOKENS, "ignore_eos_token": True},
        })
        body = None if response.status == 200 else await response.json()
        self._keep("lorax", response.status, body, response)

    async def socket(self, ws) -> None:
        await ws.send(json.dumps({"type": "chat.send", "content": "A long story", "params": HELD}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        accepted = first["type"] == "inference.start"
        self._keep("socket", 200 if accepted else 429, first["payload"], ws)


async def burst(base_url: str, account: Account, conversations: list[int]) -> Burst:
    cookie = "; ".join(f"{k}={v}" for k, v in account.session.cookies.items())
    sockets = [
        await websockets.connect(
            socket_url(base_url), origin=base_url, additional_headers={"Cookie": cookie}
        )
        for _ in range(EACH)
    ]
    limits = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        base_url, headers=account.headers, connector=limits,
        timeout=aiohttp.ClientTimeout(total=120),
    ) as http:
        result = Burst(account)
        await asyncio.gather(
            *(result.native(http, conversation) for conversation in conversations),
            *(result.openai(http) for _ in range(EACH)),
            *(result.lorax(http) for _ in range(EACH)),
            *(result.socket(ws) for ws in sockets),
        )
        for handle in result.open:
            if isinstance(handle, aiohttp.ClientResponse):
                handle.close()
        for message in result.unfollowed:
            (await http.post(f"/api/v1/messages/{message}/stop")).close()
        for ws in sockets:
            await ws.close()
    return result


def test_it_never_lets_a_simultaneous_burst_across_transports_past_the_cap(base_url):
    account = Account(base_url, "burst")
    conversations = [account.post("/api/v1/conversations/", {}).json()["id"] for _ in range(EACH)]

    result = asyncio.run(burst(base_url, account, conversations))

    assert result.accepted == CAP
    assert len(result.refusals) == 4 * EACH - CAP
    for transport, status, body in result.refusals:
        assert status == 429, (transport, body)
        if transport == "openai":
            assert body["error"]["code"] == "too_many_streams"
        elif transport == "lorax":
            assert body["error_type"] == "overloaded"
        else:  # native body, socket error payload
            assert body["code"] == "too_many_streams" and body["message"]


HOSTILE = {
    "lone surrogate": '"a\\ud800b"',
    "NUL": '"a\\u0000b"',
    "deep nesting": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("name, value", HOSTILE.items(), ids=HOSTILE.keys())
def test_it_refuses_hostile_json_at_once_on_every_transport(base_url, name, value):
    account = Account(base_url, "hostile-" + name.replace(" ", "-"))
    conversation = account.post("/api/v1/conversations/", {}).json()["id"]
    calls = [
        ("/v1/chat/completions", '{"model": "base", "messages": [{"role": "user", "content": %s}]}'
         % value, 400),
        ("/lorax/generate", '{"inputs": %s}' % value, 422),
        (f"/api/v1/conversations/{conversation}/messages/", '{"content": %s}' % value, 400),
    ]
    for path, body, status in calls:
        began = time.monotonic()
        response = requests.post(
            base_url + path, data=body.encode(), timeout=30,
            headers={**account.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == status, (path, response.text[:200])
        assert response.headers["Content-Type"].startswith("application/json")
        assert time.monotonic() - began < 5, path

    asyncio.run(hostile_frame(base_url, account, value))


async def hostile_frame(base_url: str, account: Account, value: str) -> None:
    cookie = "; ".join(f"{k}={v}" for k, v in account.session.cookies.items())
    async with websockets.connect(
        socket_url(base_url), origin=base_url, additional_headers={"Cookie": cookie}
    ) as ws:
        await ws.send('{"type": "chat.send", "content": %s}' % value)
        error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert (error["type"], error["payload"]["code"]) == ("inference.error", "bad_request")
        await asyncio.wait_for(ws.recv(), 30)  # its end
        await ws.send(json.dumps({"type": "chat.send", "content": "Hi", "params": {"max_tokens": 2}}))
        start = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert start["type"] == "inference.start"  # the socket stayed open and usable
