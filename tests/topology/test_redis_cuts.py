"""A worker loses Redis (a TCP proxy between it and Redis is cut; the shared server never stops).

A short cut: the answer goes on with nothing lost or repeated, and Stop still works on that
worker. A cut longer than WORKER_LOST_AFTER_S: the answer ends as an error with the text its
client was shown, and the worker serves again once Redis is back. Either way nothing stays live.
"""

import asyncio
import json
import time
from urllib.parse import urlparse

import psycopg
import pytest

from tests.e2e.clients import message, receive, text_of
from tests.e2e.servers import sign_up
from tests.topology.conftest import REDIS_URL, deployment
from tests.topology.cuttable import CuttableProxy
from tests.topology.test_celery_streaming import start_chat, wait_for

# Shorter than the default 15 s, so a cut past it does not take the suite long.
LOST_AFTER_S = 8
SHORT_CUT_S = 4.5
pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cut_off(demo_model, tmp_path_factory):
    """A deployment whose one worker reaches Redis only through a proxy: (stack, proxy)."""
    target = urlparse(REDIS_URL)
    proxy = CuttableProxy(target.hostname, target.port or 6379)
    with deployment(tmp_path_factory.mktemp("cuts"), workers=0,
                    WORKER_LOST_AFTER_S=str(LOST_AFTER_S)) as stack:
        stack.start_worker(REDIS_URL=proxy.url_for(REDIS_URL))
        yield stack, proxy
    proxy.close()


def live_answers(stack) -> list:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return conn.execute(
            "SELECT id, status FROM chat_message WHERE status IN ('pending', 'streaming')"
        ).fetchall()


async def read_until_end(ws, events: list, timeout: float) -> list:
    """Append to `events` (with their arrival times) up to the end."""
    while not events or events[-1][1]["type"] != "inference.end":
        events.append((time.monotonic(), await receive(ws, timeout)))
    return events


def test_it_goes_on_after_a_short_cut_and_stop_still_works(cut_off):
    stack, proxy = cut_off
    session = sign_up(stack.base_url, "cora")

    async def chat_through_a_cut():
        ws, start, seen = await start_chat(stack.base_url, session, 3)
        events = []
        reader = asyncio.create_task(read_until_end(ws, events, 60))
        proxy.cut()
        await asyncio.sleep(SHORT_CUT_S)
        proxy.restore()
        restored_at = time.monotonic()

        def tokens_since_restored():
            return [at for at, e in events if at > restored_at and e["type"] == "inference.token"]

        while len(tokens_since_restored()) < 10 and not reader.done():
            await asyncio.sleep(0.05)
        # Stop reaches the worker over the control channel it had to subscribe to again.
        await ws.send(json.dumps({"type": "chat.stop", "message": start["payload"]["message"]}))
        await reader
        await ws.close()
        return start["payload"], seen, [e for _, e in events], tokens_since_restored()[0] - restored_at

    start, seen, after, recovered_in = asyncio.run(chat_through_a_cut())
    print(f"\nfirst token {recovered_in:.2f} s after a {SHORT_CUT_S} s Redis cut ended")

    shown = seen + after
    indexes = [e["payload"]["index"] for e in shown if e["type"] == "inference.token"]
    assert indexes == list(range(len(indexes))), "a token was lost or repeated across the cut"
    assert [e["type"] for e in after if e["type"] != "inference.token"] == ["inference.end"]
    assert after[-1]["payload"]["reason"] == "cancelled"
    saved = message(session, stack.base_url, start["conversation"], start["message"])
    assert saved["status"] == "stopped"
    assert saved["content"] == text_of(shown)
    assert not live_answers(stack)


def test_it_ends_an_answer_cut_off_too_long_with_its_text_and_serves_again(cut_off):
    stack, proxy = cut_off
    session = sign_up(stack.base_url, "dina")

    async def chat_through_a_long_cut():
        ws, start, seen = await start_chat(stack.base_url, session, 3)
        proxy.cut()
        cut_at = time.monotonic()
        try:
            events = await read_until_end(ws, [], LOST_AFTER_S + 40)
        finally:
            proxy.restore()
        ended_in = events[-1][0] - cut_at
        await ws.close()
        return start["payload"], seen, [e for _, e in events], ended_in

    start, seen, after, ended_in = asyncio.run(chat_through_a_long_cut())
    print(f"\nanswer ended {ended_in:.1f} s into a Redis cut (WORKER_LOST_AFTER_S={LOST_AFTER_S})")

    assert [e["payload"]["code"] for e in after if e["type"] == "inference.error"] == ["worker_lost"]
    assert [e for e in after if e["type"] == "inference.end"] == [after[-1]]
    assert after[-1]["payload"]["reason"] == "error"
    saved = message(session, stack.base_url, start["conversation"], start["message"])
    assert saved["status"] == "error" and saved["error"]["code"] == "worker_lost"
    assert saved["content"] == text_of(seen + after), "the saved text is not what was shown"
    assert wait_for(lambda: not live_answers(stack), within=30), live_answers(stack)

    # Back on Redis, the same worker answers again, and Stop reaches it.
    assert wait_for(lambda: stack.redis.hexists("patchbay:workers", _name(stack)), within=60)

    async def chat_and_stop_again():
        ws, again, _ = await start_chat(stack.base_url, session, 2, timeout=60)
        await ws.send(json.dumps({"type": "chat.stop", "message": again["payload"]["message"]}))
        events = await read_until_end(ws, [], 60)
        await ws.close()
        return events[-1][1]

    assert asyncio.run(chat_and_stop_again())["payload"]["reason"] == "cancelled"
    assert not live_answers(stack)


def _name(stack) -> str:
    from tests.topology.conftest import routing_name

    return routing_name(stack.worker)
