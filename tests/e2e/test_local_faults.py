"""Local mode, two web processes on one database: a second one starting leaves the first one's
live answers alone; after a kill -9 the answer ends `interrupted` with the text its client was
shown, up to the last checkpoint period."""

import asyncio
import json
import time

import pytest

from chatsite.chat.streams.checkpoints import EVERY_S
from tests.e2e.clients import chat_frame, message, open_socket, receive, text_of
from tests.e2e.servers import (
    daphne_server,
    manage,
    scratch_database,
    server_env,
    sign_up,
    wait_until_healthy,
)
from tests.holding import HELD
from tests.settings import TEST_MODEL_DIR

# Short, so that a process's silence counts as death soon; both processes use it.
LOST_AFTER_S = 3
# A busy machine delays ticks: text shown this long before a kill must be saved.
SAVED_WITHIN_S = EVERY_S + 2.0
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


@pytest.fixture
def database(demo_model, tmp_path):
    with scratch_database(tmp_path) as database_url:
        # ENGINE_WARMUP=1: start as a served process does, orphan sweep included.
        env = server_env(database_url, TEST_MODEL_DIR, ENGINE_WARMUP="1",
                         WORKER_LOST_AFTER_S=str(LOST_AFTER_S), STREAM_RESUME_GRACE_S="30")
        manage(env, "migrate", "--noinput")
        manage(env, "make_demo_model")
        yield env


def start_daphne(env, log_path):
    server, base_url = daphne_server(env, log_path)
    server.start()
    wait_until_healthy(base_url, server.process, server.log_path)
    return server, base_url


async def read(ws, events: list) -> None:
    """Every envelope up to the end (or the socket's loss), with its arrival time."""
    try:
        while not events or events[-1][1]["type"] != "inference.end":
            events.append((time.monotonic(), await receive(ws, 60)))
    except Exception:  # the server was killed
        return


def test_it_leaves_a_live_answer_alone_when_a_second_process_starts(database, tmp_path):
    first, first_url = start_daphne(database, tmp_path / "first.log")
    second = None
    try:
        session = sign_up(first_url, "ola")

        async def chat_while_another_starts():
            nonlocal second
            ws = await open_socket(first_url, session)
            await ws.send(chat_frame("Tell me a long story.", params=HELD))
            events = []
            reader = asyncio.create_task(read(ws, events))
            while len(events) < 4:
                await asyncio.sleep(0.05)
            second, _ = await asyncio.to_thread(start_daphne, database, tmp_path / "second.log")
            # Its start-up sweep, then the later one that would catch a just-dead process.
            await asyncio.sleep(LOST_AFTER_S + 3)
            start = events[0][1]["payload"]
            saved = await asyncio.to_thread(
                message, session, first_url, start["conversation"], start["message"])
            count = len(events)
            await asyncio.sleep(1)
            still_streaming = len(events) > count
            await ws.send(json.dumps({"type": "chat.stop", "message": start["message"]}))
            await reader
            await ws.close()
            return start, saved, still_streaming, [e for _, e in events]

        start, during, still_streaming, events = asyncio.run(chat_while_another_starts())
    finally:
        first.stop()
        if second is not None:
            second.stop()

    assert during["status"] == "streaming", during
    assert still_streaming
    assert events[-1]["payload"]["reason"] == "cancelled"
    server, base_url = start_daphne(database, tmp_path / "third.log")
    try:
        saved = message(session, base_url, start["conversation"], start["message"])
    finally:
        server.stop()
    assert saved["status"] == "stopped"
    assert saved["content"] == text_of(events)


def test_it_saves_what_was_shown_up_to_the_last_checkpoint_after_a_kill(database, tmp_path):
    """The other process, started before the answer, ends it: nobody has to restart."""
    first, first_url = start_daphne(database, tmp_path / "killed.log")
    other, other_url = start_daphne(database, tmp_path / "other.log")
    try:
        session = sign_up(first_url, "pia")

        async def chat_until_killed():
            ws = await open_socket(first_url, session)
            await ws.send(chat_frame("Tell me a long story.", params=HELD))
            events = []
            reader = asyncio.create_task(read(ws, events))

            def streamed_for() -> float:  # since the first token (the model may load first)
                tokens = [at for at, e in events if e["type"] == "inference.token"]
                return time.monotonic() - tokens[0] if tokens else 0.0

            while streamed_for() < 3 * SAVED_WITHIN_S:
                await asyncio.sleep(0.05)
            first.kill()
            killed_at = time.monotonic()
            await reader
            return events, killed_at

        events, killed_at = asyncio.run(chat_until_killed())
        start = events[0][1]["payload"]
        deadline = time.monotonic() + LOST_AFTER_S + 60
        while True:
            saved = message(session, other_url, start["conversation"], start["message"])
            if saved["status"] not in ("pending", "streaming") or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    finally:
        first.stop()
        other.stop()

    shown = [e for _, e in events]
    must_be_saved = text_of([e for at, e in events if at < killed_at - SAVED_WITHIN_S])
    assert saved["status"] == "interrupted", saved
    print(f"\nsaved {len(saved['content'])} of {len(text_of(shown))} characters shown")
    assert text_of(shown).startswith(saved["content"])
    assert saved["content"].startswith(must_be_saved), (len(saved["content"]), len(must_be_saved))
