"""Adapter-affinity routing with two real workers: where a task goes, and what happens to the
tasks of a worker that dies (docs/ARCHITECTURE.md, "Routing in celery mode")."""

import json
import time

import pytest
import requests

from chatsite.chat.streams import tokenlog
from tests.e2e.servers import sign_up
from tests.holding import HELD
from tests.topology.conftest import deployment, routing_name
from tests.topology.test_celery_streaming import wait_for
from tests.topology.test_sse_resume import events

pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.timeout(300)]

ADAPTERS = ("demo-chef", "demo-poet", "demo-terse")
LOST_AFTER_S = 4


@pytest.fixture(scope="module")
def pair(demo_model, tmp_path_factory):
    # One adapter slot each, so an adapter is held by one worker at a time; quick heartbeats
    # (a record goes stale after 3 s, a heartbeat after LOST_AFTER_S).
    with deployment(
        tmp_path_factory.mktemp("affinity"), workers=2, ADAPTER_CACHE_SLOTS="1",
        WORKER_HEARTBEAT_S="1", WORKER_LOST_AFTER_S=str(LOST_AFTER_S),
    ) as stack:
        yield stack


# --- helpers ------------------------------------------------------------------------------------
def ask(stack, session, adapter: str | None, parameters=None) -> int:
    """Send a message in a new conversation through the API; the answer's id."""
    headers = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{stack.base_url}/"}
    api = f"{stack.base_url}/api/v1"
    conversation = session.post(f"{api}/conversations/", json={"adapter": adapter}, headers=headers)
    sent = session.post(
        f"{api}/conversations/{conversation.json()['id']}/messages/",
        json={"content": "Hello!", "parameters": parameters or {"max_tokens": 12, "temperature": 0}},
        headers=headers,
    )
    assert sent.status_code == 201, sent.text
    return sent.json()["message"]


def saved(stack, session, message_id: int) -> dict:
    return session.get(f"{stack.base_url}/api/v1/messages/{message_id}/").json()


def ended(stack, session, message_id: int, within: float = 60) -> dict:
    answer = wait_for(
        lambda: (a := saved(stack, session, message_id))["status"] not in ("pending", "streaming") and a,
        within=within, every=0.2,
    )
    assert answer, f"answer {message_id} did not end within {within} s"
    return answer


def routed_to(stack, message_id: int) -> str:
    """The worker the web tier sent the task to; once started, the worker that claimed it."""
    return stack.redis.get(tokenlog.owner_key(message_id)).decode()


def records(stack) -> dict[str, dict]:
    return {
        name.decode(): json.loads(raw)
        for name, raw in stack.redis.hgetall(tokenlog.WORKERS_KEY).items()
    }


def held(stack) -> dict[str, set[str]]:
    """What each live worker's record says its engine holds."""
    now = time.time()
    return {name: set(r["adapters"]) for name, r in records(stack).items() if r["until"] >= now}


def alive(stack):
    return [worker for worker in stack.workers if worker.process.poll() is None]


def held_by_one(stack, session) -> tuple[str, str]:
    """An adapter that exactly one worker holds, and that worker (loading one if need be)."""
    for adapter in ADAPTERS:
        holders = [name for name, adapters in held(stack).items() if adapter in adapters]
        if len(holders) == 1:
            return adapter, holders[0]
    adapter = next(a for a in ADAPTERS if not any(a in h for h in held(stack).values()))
    message_id = ask(stack, session, adapter)
    assert ended(stack, session, message_id)["status"] == "complete"
    holder = routed_to(stack, message_id)
    assert wait_for(lambda: adapter in held(stack)[holder], within=30)
    return adapter, holder


def routing_decisions(stack, outcome: str) -> float:
    text = requests.get(f"{stack.base_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("patchbay_routing_decisions_total") and f'outcome="{outcome}"' in line
    )


# --- the specification --------------------------------------------------------------------------
def test_it_sends_a_request_to_the_worker_holding_its_adapter(pair):
    session = sign_up(pair.base_url, "ona")
    adapter, holder = held_by_one(pair, session)
    before = routing_decisions(pair, "affinity")

    # Four at once: the holder gets all of them although the other worker is idle.
    ids = [ask(pair, session, adapter) for _ in range(4)]

    assert [routed_to(pair, message_id) for message_id in ids] == [holder] * 4
    for message_id in ids:
        assert ended(pair, session, message_id)["status"] == "complete"
    assert [routed_to(pair, message_id) for message_id in ids] == [holder] * 4  # who ran them
    assert routing_decisions(pair, "affinity") == before + 4


def test_it_sends_an_adapter_nobody_holds_to_the_least_busy_worker(pair):
    session = sign_up(pair.base_url, "pia")
    busy = ask(pair, session, "demo-chef", parameters=HELD)
    busy_worker = routed_to(pair, busy)
    nobodys = next(a for a in ADAPTERS if not any(a in h for h in held(pair).values()))

    other = ask(pair, session, nobodys)

    assert saved(pair, session, busy)["status"] in ("pending", "streaming")
    assert routed_to(pair, other) != busy_worker, (records(pair), pair.redis.hgetall(tokenlog.ROUTED_KEY))
    assert ended(pair, session, other)["status"] == "complete"
    headers = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{pair.base_url}/"}
    session.post(f"{pair.base_url}/api/v1/messages/{busy}/stop", headers=headers)
    assert ended(pair, session, busy)["status"] == "stopped"


def test_it_routes_to_the_survivor_once_a_dead_workers_record_is_stale(pair):
    session = sign_up(pair.base_url, "quin")
    victim, survivor = alive(pair)
    victim.kill()
    try:
        assert wait_for(lambda: routing_name(victim) not in held(pair), within=30)

        ids = [ask(pair, session, adapter) for adapter in (*ADAPTERS[:2], None)]

        assert {routed_to(pair, message_id) for message_id in ids} == {routing_name(survivor)}
        for message_id in ids:
            assert ended(pair, session, message_id)["status"] == "complete"
    finally:
        pair.start_worker()


def test_it_ends_an_answer_stranded_on_the_queue_of_a_worker_that_died(pair):
    session = sign_up(pair.base_url, "rosa")
    adapter, holder = held_by_one(pair, session)
    victim = next(worker for worker in alive(pair) if routing_name(worker) == holder)
    victim.kill()
    try:
        # Its record is still fresh for up to 3 s: the web tier sends the task to its queue.
        stranded = ask(pair, session, adapter)
        assert routed_to(pair, stranded) == holder

        answer = ended(pair, session, stranded, within=LOST_AFTER_S + 30)

        assert answer["status"] == "error"
        assert answer["error"]["code"] == "worker_lost"
        with session.get(f"{pair.base_url}/api/v1/messages/{stranded}/stream", stream=True,
                         timeout=30) as response:
            log = [envelope["type"] for _, envelope in events(response)]
        assert log == ["inference.start", "inference.error", "inference.end"]
    finally:
        pair.start_worker()
