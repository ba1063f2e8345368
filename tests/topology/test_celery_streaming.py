"""Celery mode end to end: the worker generates, Redis carries the log, Daphne relays it."""

import asyncio
import random
import time

import psycopg
import pytest

from tests.e2e.clients import chat_frame, message, open_socket, receive, text_of, until_end
from tests.e2e.servers import daphne, sign_up
from tests.holding import HELD, HELD_TOKENS

pytestmark = [pytest.mark.e2e, pytest.mark.services, pytest.mark.timeout(400)]


def wait_for(check, within: float, every: float = 0.1):
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


async def start_chat(base_url, session, tokens: int, timeout: float = 30, params=HELD):
    """Send a message, read the start and `tokens` tokens; returns (ws, start, seen).
    By default the answer is held open until the test ends it (tests/holding.py)."""
    ws = await open_socket(base_url, session)
    await ws.send(chat_frame("Tell me a long story.", params=params))
    start = await receive(ws, timeout)
    assert start["type"] == "inference.start", start
    seen = [await receive(ws, timeout) for _ in range(tokens)]
    assert all(e["type"] == "inference.token" for e in seen), seen
    return ws, start, seen


def test_it_streams_an_answer_generated_by_the_worker(stack):
    session = sign_up(stack.base_url, "ida")

    async def chat():
        async with await open_socket(stack.base_url, session) as ws:
            await ws.send(chat_frame("Hello!", adapter="demo-chef", params={"max_tokens": 40, "seed": 4}))
            return await until_end(ws)

    events = asyncio.run(chat())
    start = events[0]["payload"]
    saved = message(session, stack.base_url, start["conversation"], start["message"])
    assert events[-1]["payload"]["reason"] in ("stop", "length")
    assert saved["status"] == "complete"
    assert saved["content"] == text_of(events)
    assert saved["adapter"] == "demo-chef"


def test_it_resumes_over_a_new_socket_without_gap_or_duplicate(stack):
    session = sign_up(stack.base_url, "jack")

    async def chat_drop_and_resume():
        ws, start, seen = await start_chat(stack.base_url, session, 3,
                                           params={"max_tokens": 80, "temperature": 0})
        await ws.close()
        async with await open_socket(stack.base_url, session) as again:
            resume = {"type": "chat.follow", "message": start["payload"]["message"], "resume": 3}
            await again.send(__import__("json").dumps(resume))
            return start, seen, await until_end(again)

    start, seen, rest = asyncio.run(chat_drop_and_resume())
    saved = message(session, stack.base_url, start["payload"]["conversation"], start["payload"]["message"])
    indexes = [e["payload"]["index"] for e in seen + rest if e["type"] == "inference.token"]
    assert indexes == list(range(len(indexes)))
    assert text_of(seen) + text_of(rest) == saved["content"]
    assert saved["status"] == "complete"


def test_it_stops_the_worker_generation_on_stop(stack):
    session = sign_up(stack.base_url, "kim")

    async def chat_and_stop():
        ws, start, seen = await start_chat(stack.base_url, session, 2)
        await ws.send(__import__("json").dumps({"type": "chat.stop", "message": start["payload"]["message"]}))
        rest = await until_end(ws)
        await ws.close()
        return start, seen, rest

    start, seen, rest = asyncio.run(chat_and_stop())
    saved = message(session, stack.base_url, start["payload"]["conversation"], start["payload"]["message"])
    assert rest[-1]["payload"]["reason"] == "cancelled"
    assert saved["status"] == "stopped"
    assert saved["content"] == text_of(seen) + text_of(rest)


def test_it_interrupts_fifty_dropped_clients_and_keeps_each_prefix(stack, tmp_path):
    grace = 1.0
    # One user holds all fifty live: raise the per-user cap for it.
    env = {**stack.env, "STREAM_RESUME_GRACE_S": str(grace), "MAX_LIVE_ANSWERS": "50"}
    with daphne(env, tmp_path / "daphne-fifty.log") as base_url:
        session = sign_up(base_url, "lou")
        rng = random.Random(50)

        async def drop_after(tokens: int):
            # 50 answers share one worker's 16 slots: the last ones wait several waves.
            ws, start, seen = await start_chat(base_url, session, tokens, timeout=180)
            await ws.close()
            return start["payload"], text_of(seen)

        async def fifty():
            return await asyncio.gather(*(drop_after(rng.randint(1, 12)) for _ in range(50)))

        dropped = asyncio.run(fifty())
        dropped_at = time.monotonic()

        ids = [start["message"] for start, _ in dropped]

        def still_live():  # straight from the database: 50 API calls would take seconds
            with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
                return conn.execute(
                    "SELECT id FROM chat_message WHERE id = ANY(%s)"
                    " AND status IN ('pending', 'streaming')", (ids,)
                ).fetchall()

        wait_for(lambda: not still_live(), within=60, every=0.1)
        took = time.monotonic() - dropped_at
        # Held answers would run for minutes: ending within this bound is the grace at work.
        assert took <= grace + 20, f"generations still ran {took:.1f} s after the last client left"
        for start, seen in dropped:
            saved = message(session, base_url, start["conversation"], start["message"])
            assert saved["status"] == "interrupted", saved
            assert saved["content"].startswith(seen)
            assert saved["usage"]["completion_tokens"] < HELD_TOKENS
