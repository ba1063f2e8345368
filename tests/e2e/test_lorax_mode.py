"""INFERENCE_MODE=lorax for real: a web process streams its answers from a LoRAX server through
lorax-client. The LoRAX server is this project's own `/lorax` endpoint, served by a second live
Daphne in local mode (a real LoRAX server needs a GPU)."""

import asyncio
import json
import shutil
import subprocess
import sys
import time

import pytest
import requests

from tests.e2e.clients import (
    chat_frame,
    message,
    open_socket,
    receive,
    text_of,
    until_end,
)
from tests.e2e.servers import (
    ROOT,
    daphne,
    manage,
    demo_database,
    server_env,
    sign_up,
)
from tests.holding import HELD
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e


def api_key_for(env: dict, username: str) -> str:
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         f"from django.contrib.auth.models import User; User.objects.create_user({username!r})"],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=120,
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", username], cwd=ROOT, env=env,
        check=True, capture_output=True, text=True, timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def servers(demo_model, tmp_path_factory):
    """(the LoRAX-mode web server's URL, the upstream's URL, its LoRAX key)."""
    tmp = tmp_path_factory.mktemp("lorax")
    (tmp / "up").mkdir()
    (tmp / "web").mkdir()
    with demo_database(tmp / "up", TEST_MODEL_DIR) as up_db, \
            demo_database(tmp / "web", TEST_MODEL_DIR) as web_db:  # the same adapter slugs
        up_env = server_env(up_db, TEST_MODEL_DIR)
        key = api_key_for(up_env, "lorax-client")
        with daphne(up_env, tmp / "up.log") as upstream:
            # Its own adapter directory: the shared test model's must not change.
            shutil.copytree(TEST_MODEL_DIR / "adapters", tmp / "web-adapters")
            web_env = server_env(
                web_db, TEST_MODEL_DIR, INFERENCE_MODE="lorax", LORAX_URL=f"{upstream}/lorax",
                LORAX_API_KEY=key, ADAPTERS_DIR=str(tmp / "web-adapters"),
            )
            manage(web_env, "import_adapter", str(tmp / "web-adapters" / "demo-poet"),
                   "--slug", "demo-only-here")
            web_key = api_key_for(web_env, "lorax-details")
            with daphne(web_env, tmp / "web.log") as web:
                yield web, upstream, key, web_key


@pytest.fixture
def web(servers):
    return servers[0]


async def ask(base_url: str, user: str, **fields) -> tuple[list[dict], dict]:
    session = sign_up(base_url, user)
    ws = await open_socket(base_url, session)
    try:
        await ws.send(chat_frame("Tell me about rivers.", **fields))
        events = await until_end(ws, timeout=60)
    finally:
        await ws.close()
    start = events[0]["payload"]
    return events, message(session, base_url, start["conversation"], start["message"])


async def test_it_streams_an_answer_from_lorax_and_saves_it(web):
    events, saved = await ask(web, "lena", adapter="demo-poet",
                              params={"max_tokens": 16, "temperature": 0, "seed": 3})

    tokens = [e for e in events if e["type"] == "inference.token"]
    assert events[0]["type"] == "inference.start" and events[0]["payload"]["adapter"] == "demo-poet"
    assert [t["payload"]["index"] for t in tokens] == list(range(len(tokens))) and tokens
    end = events[-1]["payload"]
    assert end["reason"] in ("stop", "length") and end["usage"]["completion_tokens"] > 0
    assert end["timings"]["ttft_ms"] is not None
    assert saved["content"] == text_of(events) and saved["status"] == "complete"


def upstream_answers(upstream: str, key: str) -> list[dict]:
    """The answers the LoRAX server generated for us, newest first (its API, by key)."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {key}"
    body = api.get(f"{upstream}/api/v1/conversations/").json()
    rows = body["results"] if isinstance(body, dict) else body
    newest = max(rows, key=lambda row: row["id"])
    messages = api.get(f"{upstream}/api/v1/conversations/{newest['id']}/messages/").json()
    return [m for m in messages if m["role"] == "assistant"]


async def test_it_stops_the_upstream_stream_and_keeps_the_partial_text(servers):
    web, upstream, key, _ = servers
    session = sign_up(web, "lars")
    ws = await open_socket(web, session)
    try:
        await ws.send(chat_frame("Tell me about rivers.", adapter="demo-chef",
                                 params=HELD))
        events = [await receive(ws), await receive(ws)]  # start, the first token
        await ws.send(json.dumps({"type": "chat.stop", "message": events[0]["payload"]["message"]}))
        events += await until_end(ws, timeout=60)
    finally:
        await ws.close()

    start = events[0]["payload"]
    assert events[-1]["payload"]["reason"] == "cancelled"
    saved = message(session, web, start["conversation"], start["message"])
    assert saved["status"] == "stopped" and saved["content"] == text_of(events)
    # Closing the upstream stream ended the generation on the LoRAX server too.
    deadline = time.monotonic() + 20
    while (status := upstream_answers(upstream, key)[-1]["status"]) == "streaming":
        assert time.monotonic() < deadline, "the LoRAX server kept generating"
        await asyncio.sleep(0.2)
    assert status == "interrupted"


async def test_it_reports_a_lorax_error_as_an_error_envelope(web):
    # `demo-only-here` is registered on this server but unknown to the LoRAX server: it refuses
    # the adapter there (404), and that must reach our user as an error envelope.
    events, saved = await ask(web, "lucy", adapter="demo-only-here", params={"max_tokens": 8})

    error = next(e for e in events if e["type"] == "inference.error")["payload"]
    assert error["code"] == "unknown_adapter" and "LoRAX" in error["message"]
    assert events[-1]["payload"]["reason"] == "error"
    assert saved["status"] == "error"


def test_it_refuses_to_start_without_lorax_url(tmp_path):
    env = server_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", TEST_MODEL_DIR, INFERENCE_MODE="lorax")
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "LORAX_URL" in done.stderr





def test_it_passes_on_the_upstream_token_details_and_refuses_what_it_cannot(servers):
    web, upstream, upstream_key, web_key = servers
    body = {"inputs": "Tell me about rivers.", "parameters": {"max_new_tokens": 6, "details": True}}

    def generate(base_url, key):
        return requests.post(
            f"{base_url}/lorax/generate", json=body,
            headers={"Authorization": f"Bearer {key}"}, timeout=60,
        )

    answer, direct = generate(web, web_key).json(), generate(upstream, upstream_key).json()
    body["parameters"]["return_k_alternatives"] = 2
    refused = generate(web, web_key)

    # Greedy, so the upstream answers both alike: the web passes its tokens on as they came.
    assert answer["generated_text"] == direct["generated_text"]
    assert answer["details"]["tokens"] == direct["details"]["tokens"]
    assert len(answer["details"]["tokens"]) == answer["details"]["generated_tokens"]
    assert answer["details"]["finish_reason"] == direct["details"]["finish_reason"]
    assert refused.status_code == 422
    assert "return_k_alternatives" in refused.json()["error"]
