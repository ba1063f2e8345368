"""The SQL statements of one exchange, counted so that they cannot silently grow.

Starting an answer is the web tier's costliest step under load: its statements run while
SQLite's one write lock is held and every other start waits (docs/BENCHMARKS.md, "Streaming
under load"). Counted on the connection's own thread (chatsite.middleware.ThreadPerConnection),
from the frame or request to its answer's start; the run saves its end on another thread, in one
statement.
"""

import json
import threading

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.db.backends import utils

from chatsite.accounts.keys import api_key_create
from chatsite.asgi import application
from chatsite.chat.models import Conversation, Message
from tests.chat.conftest import wait_for_status

pytestmark = [pytest.mark.django_db(transaction=True)]

PARAMS = {"max_tokens": 4, "seed": 1}
ENDED = (Message.Status.COMPLETE, Message.Status.ERROR)


@pytest.fixture
def statements(monkeypatch):
    """(thread name, SQL) of every statement any thread runs. On the cursor class: a
    connection's own `execute_wrapper` reaches only the thread that holds that connection."""
    seen = []
    execute = utils.CursorWrapper._execute_with_wrappers

    def counted(self, sql, *args, **kwargs):
        seen.append((threading.current_thread().name, sql))
        return execute(self, sql, *args, **kwargs)

    monkeypatch.setattr(utils.CursorWrapper, "_execute_with_wrappers", counted)
    return seen


def on_connection_thread(seen) -> list[str]:
    return [sql for thread, sql in seen if thread.startswith("connection")]


def final_saves(seen) -> list[str]:
    return [sql for _, sql in seen if sql.startswith('UPDATE "chat_message" SET "end_event_id"')]


async def test_it_starts_a_new_conversations_answer_over_the_socket_in_8_statements(
    owner, socket_for, statements
):
    socket = await socket_for(owner)
    statements.clear()  # the handshake's
    await socket.chat("Tell me about rivers.", adapter="demo-poet", params=PARAMS)
    events = await socket.until_end()

    # The session and its user (checked on every frame), the adapter; then BEGIN and the
    # live-answer count, the conversation, the user's message and the pending answer.
    assert len(on_connection_thread(statements)) == 8, on_connection_thread(statements)
    await wait_for_status(events[0]["payload"]["message"], ENDED, within=10)
    assert len(final_saves(statements)) == 1


async def test_it_starts_a_follow_up_over_the_socket_in_10_statements(
    owner, socket_for, statements
):
    socket = await socket_for(owner)
    await socket.chat("First", adapter="demo-poet", params=PARAMS)
    first = await socket.until_end()
    statements.clear()

    await socket.chat("Second", conversation=first[0]["payload"]["conversation"], params=PARAMS)
    await socket.until_end()

    # The session, its user; BEGIN, the count, the conversation, its adapter (may the user
    # still use it?), one update of the conversation, its messages (the parent and the
    # prompt), the user's message and the pending answer.
    assert len(on_connection_thread(statements)) == 10, on_connection_thread(statements)


async def test_it_starts_an_answer_over_the_native_api_in_10_statements(
    owner, demo_adapters, statements
):
    _, secret = await database_sync_to_async(api_key_create)(user=owner)
    conversation = await database_sync_to_async(Conversation.objects.create)(owner=owner)
    statements.clear()

    body = json.dumps({"content": "Hi", "adapter": "demo-poet", "parameters": PARAMS}).encode()
    communicator = HttpCommunicator(
        application, "POST", f"/api/v1/conversations/{conversation.pk}/messages/", body=body,
        headers=[(b"host", b"testserver"), (b"content-type", b"application/json"),
                 (b"content-length", str(len(body)).encode()),
                 (b"authorization", f"Bearer {secret}".encode())],
    )
    response = await communicator.get_response(timeout=30)

    assert response["status"] == 201, response["body"]
    # The key (its user joined) and its first use; BEGIN, the count, the conversation, the
    # adapter, one update of the conversation (adapter, title), its messages, the two new ones.
    assert len(on_connection_thread(statements)) == 10, on_connection_thread(statements)
    answer = json.loads(response["body"])["message"]
    await wait_for_status(answer, ENDED, within=10)
    assert len(final_saves(statements)) == 1
