"""Processes die: the worker (kill -9) and Daphne (kill -9). Nothing shown is lost, nothing is left
streaming."""

import asyncio
import time

import pytest

from tests.e2e.clients import message, receive, text_of
from tests.e2e.servers import daphne_server, sign_up, wait_until_healthy
from tests.topology.test_celery_streaming import start_chat, wait_for

WORKER_LOST_AFTER_S = 15  # the default, which the `stack` deployment keeps
pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.timeout(400)]


def test_it_reports_a_killed_worker_and_serves_again_after_a_restart(stack):
    session = sign_up(stack.base_url, "max")

    async def chat_while_worker_dies():
        ws, start, seen = await start_chat(stack.base_url, session, 3)
        stack.worker.kill()
        killed_at = time.monotonic()
        events = []
        while not events or events[-1]["type"] != "inference.end":
            events.append(await receive(ws, timeout=25))
        await ws.close()
        return start, seen, events, time.monotonic() - killed_at

    try:
        start, seen, after, took = asyncio.run(chat_while_worker_dies())
    finally:
        stack.start_worker()

    errors = [e for e in after if e["type"] == "inference.error"]
    assert [e["payload"]["code"] for e in errors] == ["worker_lost"]
    assert after[-1]["type"] == "inference.end" and after[-1]["payload"]["reason"] == "error"
    assert took < WORKER_LOST_AFTER_S + 30  # the reaper's silence limit, with room for a busy machine
    saved = message(session, stack.base_url, start["payload"]["conversation"], start["payload"]["message"])
    assert saved["status"] == "error"
    assert saved["error"]["code"] == "worker_lost"
    # Rebuilt from the token log: exactly what the client was shown, not the last checkpoint.
    assert saved["content"] == text_of(seen) + text_of(after)
    assert saved["content"]

    async def chat_again():
        ws, again, _ = await start_chat(stack.base_url, session, 1,
                                        params={"max_tokens": 5, "temperature": 0})
        events = []
        while not events or events[-1]["type"] != "inference.end":
            events.append(await receive(ws))
        await ws.close()
        return events

    assert asyncio.run(chat_again())[-1]["payload"]["reason"] in ("stop", "length")


def test_it_never_leaves_an_answer_streaming_when_daphne_dies(stack, tmp_path):
    env = {**stack.env, "STREAM_RESUME_GRACE_S": "1"}
    server, base_url = daphne_server(env, tmp_path / "daphne-killed.log")
    server.start()
    wait_until_healthy(base_url, server.process, server.log_path)
    session = sign_up(base_url, "nora")

    async def chat():
        ws, start, seen = await start_chat(base_url, session, 3)
        return start["payload"], text_of(seen)

    start, seen = asyncio.run(chat())
    server.kill()

    def settled():
        saved = message(session, stack.base_url, start["conversation"], start["message"])
        return saved if saved["status"] in ("complete", "interrupted") else None

    saved = wait_for(settled, within=60, every=0.25)
    assert saved, "the answer was left live after its web process died"
    assert saved["content"].startswith(seen)
