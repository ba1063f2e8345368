"""The HTTP APIs against a real Daphne, spoken by the real clients: `openai`, `lorax-client`
(Client and AsyncClient), plain HTTP for the native SSE stream, and schemathesis over the
OpenAPI schema. One server for the whole module."""

import asyncio
import json
import re
import subprocess
import sys

import lorax
import openai
import pytest
import requests

from tests.e2e.clients import Account
from tests.e2e.servers import local_deployment, sign_up
from tests.holding import HELD, HELD_TOKENS
from tests.settings import TEST_MODEL_DIR

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_server_url(demo_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("api")
    with local_deployment(
        tmp_path, TEST_MODEL_DIR, RATE_LIMIT="100000/minute", DEFAULT_MAX_NEW_TOKENS="16"
    ) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def alice(live_server_url):
    return Account(live_server_url, "api-alice")


@pytest.fixture(scope="module")
def bob(live_server_url):
    return Account(live_server_url, "api-bob")


def sse_events(response) -> list[dict]:
    """Parsed SSE frames: {"id", "event", "data"} per event; keep-alive comments skipped."""
    events, frame = [], {}
    for line in response.iter_lines(decode_unicode=True):
        if not line:
            if "event" in frame:  # not the `retry:` frame
                events.append(frame)
                if frame.get("event") == "inference.end":
                    break
            frame = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            frame[field] = json.loads(value) if field == "data" else value
    return events


def streamed_text(events) -> str:
    return "".join(e["data"]["payload"]["text"] for e in events if e["event"] == "inference.token")


# --- OpenAI ---------------------------------------------------------------------------------
def openai_client(account) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{account.base_url}/v1", api_key=account.key, max_retries=0)


def test_it_lists_the_base_model_and_the_adapters_for_openai(alice):
    ids = [model.id for model in openai_client(alice).models.list()]
    assert ids == ["base", "demo-chef", "demo-poet", "demo-terse"]


def test_it_answers_the_openai_client_and_records_the_conversation(alice):
    completion = openai_client(alice).chat.completions.create(
        model="demo-poet",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Tell me about rivers."},
        ],
        max_tokens=12,
        temperature=0.7,
        top_p=0.9,
        seed=3,
    )
    text = completion.choices[0].message.content
    assert text and completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens > 0
    conversation = alice.get("/api/v1/conversations/").json()[0]
    assert conversation["system_prompt"] == "Be brief."
    assert conversation["adapter"] == "demo-poet"
    messages = alice.get(f"/api/v1/conversations/{conversation['id']}/messages/").json()
    assert [m["content"] for m in messages] == ["Hi", "Hello.", "Tell me about rivers.", text]


def test_it_streams_to_the_openai_client_with_usage_last(alice):
    chunks = list(
        openai_client(alice).chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": "Count"}],
            max_tokens=10,
            seed=1,
            stop=["zzz"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    saved = alice.get(f"/api/v1/messages/{chunks[0].id.removeprefix('chatcmpl-')}/").json()
    assert saved["content"] == text and saved["adapter"] is None


def test_it_answers_an_unknown_model_with_model_not_found_and_stores_nothing(alice):
    before = len(alice.get("/api/v1/conversations/").json())
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client(alice).chat.completions.create(
            model="no-such-adapter", messages=[{"role": "user", "content": "Hi"}]
        )
    assert raised.value.code == "model_not_found"
    assert len(alice.get("/api/v1/conversations/").json()) == before


def test_it_refuses_a_bad_key_to_the_openai_client(live_server_url):
    client = openai.OpenAI(base_url=f"{live_server_url}/v1", api_key="pb_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def latest_answer(account) -> dict:
    conversation = account.get("/api/v1/conversations/").json()[0]["id"]
    return account.get(f"/api/v1/conversations/{conversation}/messages/").json()[-1]


def test_it_keeps_the_text_as_interrupted_when_an_openai_stream_is_dropped(alice):
    stream = openai_client(alice).chat.completions.create(
        model="demo-poet",
        messages=[{"role": "user", "content": "On and on"}],
        max_tokens=HELD_TOKENS,
        extra_body={"ignore_eos": True},
        stream=True,
    )
    seen = ""
    for chunk, _ in zip(stream, range(4)):
        seen += chunk.choices[0].delta.content or ""
    stream.close()

    answer = alice.wait_for_status(latest_answer(alice)["id"], statuses=("interrupted", "complete"))
    assert answer["status"] == "interrupted" and answer["content"].startswith(seen)


def test_it_keeps_the_text_as_interrupted_when_a_waiting_client_gives_up(alice):
    body = {"model": "base", "messages": [{"role": "user", "content": "Long"}], **HELD}
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{alice.base_url}/v1/chat/completions", json=body, headers=alice.headers, timeout=0.5
        )

    answer = alice.wait_for_status(latest_answer(alice)["id"], statuses=("interrupted", "complete"))
    assert answer["status"] == "interrupted"


# --- LoRAX ----------------------------------------------------------------------------------
def test_it_generates_for_the_lorax_client_with_and_without_streaming(alice):
    client = lorax.Client(f"{alice.base_url}/lorax", headers=alice.headers)

    answer = client.generate("Once upon a time", adapter_id="demo-chef", max_new_tokens=10)
    tokens = list(
        client.generate_stream("Once upon a time", adapter_id="demo-chef", max_new_tokens=10)
    )

    assert answer.generated_text  # greedy by default: both calls give the same text
    assert answer.details.finish_reason in ("length", "eos_token")
    assert answer.details.generated_tokens == 10
    assert "".join(t.token.text for t in tokens) == answer.generated_text
    assert tokens[-1].generated_text == answer.generated_text
    assert all(t.generated_text is None for t in tokens[:-1])


def test_it_generates_for_the_lorax_async_client(alice):
    client = lorax.AsyncClient(f"{alice.base_url}/lorax", headers=alice.headers)

    async def both():
        answer = await client.generate("Hello", adapter_id="", max_new_tokens=6)
        tokens = [t async for t in client.generate_stream("Hello", max_new_tokens=6)]
        return answer, tokens

    answer, tokens = asyncio.run(both())
    assert answer.generated_text == tokens[-1].generated_text
    assert tokens[-1].details.prompt_tokens > 0


def test_it_answers_lorax_generate_with_the_bare_object_and_headers(alice):
    response = alice.post(
        "/lorax/generate",
        {
            "inputs": "Hi",
            "parameters": {"adapter_id": "demo-terse", "max_new_tokens": 4, "details": True},
        },
    )
    body = response.json()
    assert response.status_code == 200 and isinstance(body, dict)
    assert response.headers["x-adapter-id"] == "demo-terse"
    assert response.headers["x-generated-tokens"] == str(body["details"]["generated_tokens"])


def test_it_reports_lorax_errors_the_way_the_client_maps_them(alice, live_server_url):
    client = lorax.Client(f"{alice.base_url}/lorax", headers=alice.headers)
    with pytest.raises(lorax.errors.NotFoundError):
        client.generate("Hi", adapter_id="no-such-adapter")
    with pytest.raises(lorax.errors.ValidationError):
        client.generate("Hi", max_new_tokens=HELD_TOKENS + 1)
    with pytest.raises(lorax.errors.ValidationError):
        list(client.generate_stream("Hi", typical_p=0.5))  # a LoRAX parameter Patchbay lacks
    anonymous = lorax.Client(f"{live_server_url}/lorax")
    with pytest.raises(lorax.errors.UnknownError, match="API key"):
        anonymous.generate("Hi")


def test_it_answers_lorax_info_and_health(live_server_url):
    assert requests.get(f"{live_server_url}/lorax/health").status_code == 200
    assert requests.get(f"{live_server_url}/lorax/info").json()["model_id"] == "base"


# --- native ---------------------------------------------------------------------------------
def test_it_streams_a_native_answer_as_sse_and_saves_it(alice):
    sent = alice.send("Hello!", max_tokens=12, adapter="demo-poet")

    response = alice.get(sent["stream"], stream=True)
    events = sse_events(response)

    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert events[0]["event"] == "inference.start" and events[-1]["event"] == "inference.end"
    assert [int(e["id"]) for e in events] == list(range(len(events)))
    saved = alice.wait_for_status(sent["message"])
    assert saved["content"] == streamed_text(events) and saved["adapter"] == "demo-poet"


def test_it_resumes_after_last_event_id_with_every_later_event_once(alice):
    sent = alice.send("Resume me", max_tokens=12)
    everything = sse_events(alice.get(sent["stream"], stream=True))

    resumed = sse_events(
        alice.get(sent["stream"], stream=True, headers={**alice.headers, "Last-Event-ID": "2"})
    )

    assert resumed == everything[3:]


def test_it_keeps_the_text_as_interrupted_when_the_sse_client_leaves(alice):
    sent = alice.send("Long", parameters=HELD)
    response = alice.get(sent["stream"], stream=True)
    seen, frames = "", 0
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: ") and "inference.token" in line:
            seen += json.loads(line[6:])["payload"]["text"]
            frames += 1
            if frames == 3:
                break
    response.close()

    saved = alice.wait_for_status(sent["message"], statuses=("interrupted", "complete"))
    assert saved["status"] == "interrupted"
    assert saved["content"].startswith(seen) and saved["usage"]["completion_tokens"] < HELD_TOKENS


def test_it_stops_a_native_answer(alice):
    sent = alice.send("Tell me a very long story.", parameters=HELD)
    with alice.get(sent["stream"], stream=True) as response:
        lines = response.iter_lines(decode_unicode=True)  # kept: dropping it closes the stream
        next(line for line in lines if "inference.token" in line)

        stopped = alice.post(f"/api/v1/messages/{sent['message']}/stop")

    assert stopped.status_code == 200
    saved = alice.wait_for_status(sent["message"])
    assert saved["status"] == "stopped" and saved["usage"]["completion_tokens"] < HELD_TOKENS


def test_it_refuses_more_than_four_generations_at_once_with_retry_after(live_server_url):
    carol = Account(live_server_url, "api-carol")
    running = [carol.send("Long", parameters=HELD)["message"] for _ in range(4)]
    conversation = carol.post("/api/v1/conversations/", {}).json()["id"]

    refused = carol.post(f"/api/v1/conversations/{conversation}/messages/", {"content": "One more"})

    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_streams"
    assert int(refused.headers["Retry-After"]) > 0
    assert carol.get(f"/api/v1/conversations/{conversation}/messages/").json() == []
    for message in running:
        carol.post(f"/api/v1/messages/{message}/stop")


def test_it_enforces_csrf_for_session_callers(live_server_url):
    session = sign_up(live_server_url, "api-dave")
    url = f"{live_server_url}/api/v1/conversations/"

    refused = session.post(url, json={"title": "no token"})
    accepted = session.post(
        url,
        json={"title": "with token"},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": url},
    )

    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert accepted.status_code == 201


def test_it_answers_404_for_another_users_ids_everywhere_streams_included(alice, bob):
    sent = alice.send("Private", max_tokens=4)
    alice.wait_for_status(sent["message"])
    conversation, message = sent["conversation"], sent["message"]

    attempts = [
        bob.get(f"/api/v1/conversations/{conversation}/"),
        requests.patch(
            f"{bob.base_url}/api/v1/conversations/{conversation}/",
            json={"title": "mine"},
            headers=bob.headers,
        ),
        requests.delete(
            f"{bob.base_url}/api/v1/conversations/{conversation}/", headers=bob.headers
        ),
        bob.get(f"/api/v1/conversations/{conversation}/messages/"),
        bob.post(f"/api/v1/conversations/{conversation}/messages/", {"content": "Hi"}),
        bob.get(f"/api/v1/messages/{message}/"),
        bob.get(f"/api/v1/messages/{message}/stream"),
        bob.get(
            f"/api/v1/messages/{message}/stream", headers={**bob.headers, "Last-Event-ID": "0"}
        ),
        bob.post(f"/api/v1/messages/{message}/stop"),
    ]

    assert [r.status_code for r in attempts] == [404] * len(attempts)
    assert all(r.json()["code"] == "not_found" for r in attempts)
    assert alice.get(f"/api/v1/conversations/{conversation}/").json()["title"] != "mine"


# --- schema and docs ------------------------------------------------------------------------
def test_it_survives_schemathesis_without_a_server_error(live_server_url, tmp_path):
    tester = Account(live_server_url, "api-schemathesis")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{live_server_url}/api/v1/schema/",
            "-H",
            f"Authorization: Bearer {tester.key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "3",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_it_serves_the_api_docs_from_this_site_under_the_csp(live_server_url):
    page = requests.get(f"{live_server_url}/api/v1/docs/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(src.startswith("/") for src in sources)
    assert "<script>" not in page.text and "<style>" not in page.text
    for src in sources:
        assert requests.get(live_server_url + src.replace("&amp;", "&")).status_code == 200
    assert requests.get(f"{live_server_url}/api/v1/schema/").status_code == 200


def test_it_renders_the_api_docs_in_a_browser_under_the_csp(live_server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page()
        blocked = []
        page.on(
            "console",
            lambda message: (
                blocked.append(message.text)
                if "Content Security Policy" in message.text and "script" in message.text
                else None
            ),
        )
        page.goto(f"{live_server_url}/api/v1/docs/")
        page.wait_for_selector(".opblock", timeout=20000)
        operations = page.locator(".opblock").count()
        browser.close()
    assert operations >= 10
    assert blocked == []
