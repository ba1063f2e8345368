"""Failover with real workers (docs/ARCHITECTURE.md, "Worker loss and failover"): an answer whose
worker is killed goes on from another worker, once; past FAILOVER_MAX it ends worker_lost."""

import asyncio
import json
import threading
import time

import pytest
import requests

from chatsite.chat.streams import tokenlog
from tests.e2e.clients import chat_frame, message, open_socket, text_of
from tests.e2e.servers import Server, sign_up
from tests.holding import HELD, HELD_ENV
from tests.topology.conftest import deployment, routing_name
from tests.topology.test_sse_resume import api_key
from tests.topology.test_sse_resume import events as sse_events

pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.timeout(900)]

LOST_AFTER_S = 5
# Generous: a loaded 2-core machine may take many seconds to hand the task to the new worker.
WITHIN_S = 90


@pytest.fixture(scope="module")
def pair(demo_model, tmp_path_factory):
    # Quick heartbeats, so a dead worker is noticed after LOST_AFTER_S; FAILOVER_MAX=1 (default).
    with deployment(
        tmp_path_factory.mktemp("failover"), workers=2, WORKER_HEARTBEAT_S="1",
        WORKER_LOST_AFTER_S=str(LOST_AFTER_S), **HELD_ENV,
    ) as stack:
        yield stack


# --- helpers ------------------------------------------------------------------------------------
class Follower:
    """A socket client that keeps reading every event, so the test can kill and start processes
    while the answer streams."""

    def __init__(self, ws):
        self.ws = ws
        self.events: list[dict] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self):
        async for raw in self.ws:
            self.events.append(json.loads(raw))

    async def until(self, check, within: float = WITHIN_S) -> list[dict]:
        deadline = time.monotonic() + within
        while not check(self.events):
            types = [e["type"] for e in self.events[-5:]]
            assert not self.task.done(), f"the socket closed; last events {types}"
            assert time.monotonic() < deadline, f"not within {within} s; last events {types}"
            await asyncio.sleep(0.05)
        return self.events

    async def close(self):
        await self.ws.close()
        await asyncio.gather(self.task, return_exceptions=True)


def types(events) -> list[str]:
    return [e["type"] for e in events]


def error_codes(events) -> list[str]:
    return [e["payload"]["code"] for e in events if e["type"] == "inference.error"]


def tokens_after_notice(events) -> int:
    if "inference.notice" not in types(events):
        return 0
    start = types(events).index("inference.notice")
    return types(events[start:]).count("inference.token")


def ended(events) -> bool:
    return bool(events) and events[-1]["type"] == "inference.end"


def serving(stack, message_id: int) -> Server:
    """The live worker that claimed the answer (its owner key names it)."""
    owner = stack.redis.get(tokenlog.owner_key(message_id)).decode()
    return next(w for w in stack.workers if w.process.poll() is None and routing_name(w) == owner)


async def held_answer(stack, session) -> tuple[Follower, int]:
    """An answer held open (tests/holding.py), followed from its first event, with tokens out."""
    follower = Follower(await open_socket(stack.base_url, session))
    await follower.ws.send(chat_frame("Tell me a long story.", params=HELD))
    await follower.until(lambda events: types(events).count("inference.token") >= 3)
    assert follower.events[0]["type"] == "inference.start", follower.events[0]
    return follower, follower.events[0]["payload"]["message"]


async def kill(worker: Server) -> float:
    await asyncio.to_thread(worker.kill)
    return time.monotonic()


def saved(stack, session, events) -> dict:
    start = events[0]["payload"]
    return message(session, stack.base_url, start["conversation"], start["message"])


def assert_one_answer(events):
    """One start, one end, token indexes 0, 1, 2… with no gap or repeat."""
    assert types(events).count("inference.start") == 1 and events[0]["type"] == "inference.start"
    assert types(events).count("inference.end") == 1 and ended(events)
    indexes = [e["payload"]["index"] for e in events if e["type"] == "inference.token"]
    assert indexes == list(range(len(indexes)))


# --- the specification --------------------------------------------------------------------------
def test_it_goes_on_from_another_worker_when_the_serving_worker_dies(pair):
    session = sign_up(pair.base_url, "ulla")

    async def chat():
        follower, answer = await held_answer(pair, session)
        victim = serving(pair, answer)
        killed_at = await kill(victim)
        await follower.until(lambda events: tokens_after_notice(events) >= 1 or ended(events))
        took = time.monotonic() - killed_at
        assert not ended(follower.events), types(follower.events[-3:])
        await follower.until(lambda events: tokens_after_notice(events) >= 5)
        survivor = serving(pair, answer)
        await follower.ws.send(json.dumps({"type": "chat.stop", "message": answer}))
        events = await follower.until(ended)
        await follower.close()
        return events, victim, survivor, took

    try:
        events, victim, survivor, took = asyncio.run(chat())
    finally:
        pair.start_worker()

    print(f"failover: kill to the first token from the new worker {took:.2f} s "
          f"(WORKER_LOST_AFTER_S={LOST_AFTER_S})")
    assert survivor is not victim
    assert_one_answer(events)
    notices = [e["payload"] for e in events if e["type"] == "inference.notice"]
    assert [(n["code"], n["resumed"]) for n in notices] == [("worker_lost", True)]
    assert "inference.error" not in types(events)
    assert events[-1]["payload"]["reason"] == "cancelled"
    assert took < LOST_AFTER_S + 30  # target LOST_AFTER_S + 1 s; room for a busy machine
    answer = saved(pair, session, events)
    assert answer["status"] == "stopped"
    assert answer["content"] == text_of(events)  # one message: the text of both workers

    # SSE from before the notice, with Last-Event-ID: the same events, numbered as the log.
    notice_at = types(events).index("inference.notice")
    last_id = notice_at - 2
    stream = f"{pair.base_url}/api/v1/messages/{events[0]['payload']['message']}/stream"
    with session.get(stream, headers={"Last-Event-ID": str(last_id)}, stream=True, timeout=60) as response:
        tail = list(sse_events(response))
    assert [event_id for event_id, _ in tail] == list(range(last_id + 1, len(events)))
    assert [envelope for _, envelope in tail] == events[last_id + 1:]


def test_it_ends_an_answer_honestly_when_its_second_worker_dies_past_the_limit(pair):
    session = sign_up(pair.base_url, "vera")

    async def chat():
        follower, answer = await held_answer(pair, session)
        await kill(serving(pair, answer))
        await follower.until(lambda events: tokens_after_notice(events) >= 3)
        await asyncio.to_thread(pair.start_worker)  # a live worker is there to fail over to
        await kill(serving(pair, answer))
        events = await follower.until(ended)
        await follower.close()
        return events

    try:
        events = asyncio.run(chat())
    finally:
        pair.start_worker()

    assert_one_answer(events)
    assert types(events).count("inference.notice") == 1  # FAILOVER_MAX=1: no second failover
    assert error_codes(events) == ["worker_lost"]
    assert events[-1]["payload"]["reason"] == "error"
    answer = saved(pair, session, events)
    assert (answer["status"], answer["error"]["code"]) == ("error", "worker_lost")
    assert answer["content"] == text_of(events)


def test_it_ends_an_answer_worker_lost_as_before_with_failover_off(pair):
    session = sign_up(pair.base_url, "wim")
    pair.reaper.stop()
    reaper = Server(["manage.py", "reaper"], {**pair.env, "FAILOVER_MAX": "0"},
                    pair.tmp_path / "reaper-no-failover.log").start()

    async def chat():
        follower, answer = await held_answer(pair, session)
        await kill(serving(pair, answer))
        events = await follower.until(ended)
        await follower.close()
        return events

    try:
        events = asyncio.run(chat())
    finally:
        reaper.stop()
        pair.reaper.start()
        pair.start_worker()

    assert_one_answer(events)
    assert "inference.notice" not in types(events)
    assert error_codes(events) == ["worker_lost"]
    answer = saved(pair, session, events)
    assert (answer["status"], answer["error"]["code"]) == ("error", "worker_lost")
    assert answer["content"] == text_of(events)


# --- the foreign streams: they pass over the notice ---------------------------------------------
BUDGET = 3000  # ends by itself (length) a few seconds after the failover on the demo model


def openai_stream(stack, key: str):
    body = {"model": "demo-chef", "messages": [{"role": "user", "content": "Tell me a story."}],
            "stream": True, "max_tokens": BUDGET, "temperature": 0, "ignore_eos": True}
    return requests.post(f"{stack.base_url}/v1/chat/completions", json=body, stream=True,
                         headers={"Authorization": f"Bearer {key}"}, timeout=WITHIN_S)


def lorax_stream(stack, key: str):
    body = {"inputs": "Tell me a story.", "parameters": {
        "adapter_id": "demo-chef", "max_new_tokens": BUDGET, "ignore_eos_token": True}}
    return requests.post(f"{stack.base_url}/lorax/generate_stream", json=body, stream=True,
                         headers={"Authorization": f"Bearer {key}"}, timeout=WITHIN_S)


def openai_text(events: list) -> str:
    return "".join(
        choice["delta"].get("content", "") for e in events if e != "[DONE]" for choice in e["choices"]
    )


def lorax_text(events: list) -> str:
    return "".join(e["token"]["text"] for e in events if not e["token"]["special"])


class Reader:
    """Every `data:` payload of an SSE response, read in a thread while the test kills workers."""

    def __init__(self, response):
        self.events: list = []
        self.thread = threading.Thread(target=self._read, args=(response,), daemon=True)
        self.thread.start()

    def _read(self, response):
        with response:
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    data = line[5:].strip()
                    self.events.append(data if data == "[DONE]" else json.loads(data))

    def wait(self, count: int):
        deadline = time.monotonic() + WITHIN_S
        while len(self.events) < count and self.thread.is_alive():
            assert time.monotonic() < deadline, self.events[-3:]
            time.sleep(0.05)


def newest_answer(stack) -> int:
    return max(int(key.split(b":")[2]) for key in stack.redis.scan_iter("patchbay:gen:*:task"))


def log_types(stack, message_id: int) -> list[str]:
    return [tokenlog.decode(fields)["type"]
            for _, fields in stack.redis.xrange(tokenlog.stream_key(message_id))]


@pytest.mark.parametrize("stream", [openai_stream, lorax_stream])
def test_it_keeps_an_api_stream_going_over_a_failover(pair, stream):
    sign_up(pair.base_url, f"api{stream.__name__[:5]}")
    key = api_key(pair, f"api{stream.__name__[:5]}")
    reader = Reader(stream(pair, key))
    reader.wait(4)
    answer = newest_answer(pair)
    try:
        victim = serving(pair, answer)
        victim.kill()
        assert "inference.end" not in log_types(pair, answer), "ended before the kill: raise BUDGET"
        reader.thread.join(timeout=WITHIN_S + BUDGET / 10)
        assert not reader.thread.is_alive(), "the stream did not end"
    finally:
        pair.start_worker()

    assert log_types(pair, answer).count("inference.notice") == 1  # it did fail over
    saved_answer = requests.get(f"{pair.base_url}/api/v1/messages/{answer}/",
                                headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    assert saved_answer["status"] == "complete"
    assert not [e for e in reader.events if isinstance(e, dict) and "error" in e]
    if stream is openai_stream:
        assert reader.events[-1] == "[DONE]"
        assert reader.events[-2]["choices"][0]["finish_reason"] == "length"
        assert openai_text(reader.events) == saved_answer["content"]
    else:
        last = reader.events[-1]
        assert last["details"]["finish_reason"] == "length"
        assert last["generated_text"] == saved_answer["content"] == lorax_text(reader.events)
        assert last["details"]["generated_tokens"] == BUDGET  # both workers' tokens, one budget
