"""SSE in celery mode: a client that reconnects with Last-Event-ID gets every later event once."""

import json
import subprocess
import sys

import pytest
import requests

from tests.e2e.servers import ROOT, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.timeout(400)]


def api_key(stack, username: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "create_api_key", username], cwd=ROOT, env=stack.env,
        capture_output=True, text=True, check=True, timeout=120,
    )
    return result.stdout.strip().splitlines()[-1]


def events(response, limit: int | None = None):
    """(id, envelope) pairs from an SSE response, skipping keep-alive comments."""
    seen = 0
    event_id, data = None, None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            yield event_id, data
            event_id, data = None, None
            seen += 1
            if limit and seen >= limit:
                return


def test_it_resumes_an_sse_stream_from_last_event_id_without_gap_or_duplicate(stack):
    sign_up(stack.base_url, "olga")
    headers = {"Authorization": f"Bearer {api_key(stack, 'olga')}"}
    api = f"{stack.base_url}/api/v1"
    conversation = requests.post(f"{api}/conversations/", json={}, headers=headers).json()["id"]
    sent = requests.post(
        f"{api}/conversations/{conversation}/messages/",
        json={"content": "Tell me a long story.", "parameters": {"max_tokens": 120, "temperature": 0}},
        headers=headers,
    )
    assert sent.status_code == 201, sent.text
    stream_url = f"{stack.base_url}{sent.json()['stream']}"

    with requests.get(stream_url, headers=headers, stream=True, timeout=60) as first:
        head = list(events(first, limit=4))  # start and three tokens, then the connection drops
    last_id = head[-1][0]
    with requests.get(
        stream_url, headers={**headers, "Last-Event-ID": str(last_id)}, stream=True, timeout=60
    ) as again:
        tail = list(events(again))

    ids = [event_id for event_id, _ in head + tail]
    assert ids == list(range(len(ids)))
    assert tail[-1][1]["type"] == "inference.end"
    text = "".join(e["payload"]["text"] for _, e in head + tail if e["type"] == "inference.token")
    saved = requests.get(f"{api}/messages/{sent.json()['message']}/", headers=headers).json()
    assert saved["content"] == text
    assert saved["status"] == "complete"


def test_it_answers_204_once_the_client_has_the_end_of_a_finished_answer(stack):
    sign_up(stack.base_url, "pavel")
    headers = {"Authorization": f"Bearer {api_key(stack, 'pavel')}"}
    api = f"{stack.base_url}/api/v1"
    conversation = requests.post(f"{api}/conversations/", json={}, headers=headers).json()["id"]
    sent = requests.post(
        f"{api}/conversations/{conversation}/messages/",
        json={"content": "Hi", "parameters": {"max_tokens": 6}},
        headers=headers,
    ).json()
    stream_url = f"{stack.base_url}{sent['stream']}"
    with requests.get(stream_url, headers=headers, stream=True, timeout=60) as first:
        everything = list(events(first))

    # The worker saved the id its token log gave the end: a reconnect from there is over.
    again = requests.get(
        stream_url, headers={**headers, "Last-Event-ID": str(everything[-1][0])}, timeout=60
    )

    assert everything[-1][1]["type"] == "inference.end"
    assert again.status_code == 204
