"""The reaper ends an answer whose worker went silent with the text of its token log, and its
worker can write nothing to that log afterwards (real Redis)."""

import json
import os

import pytest
import redis

from chatsite.chat.models import Conversation, Message
from chatsite.chat.streams import envelopes, tokenlog
from chatsite.chat.workers import failover, reaper, task_routing
from tests.conftest import require_service

pytestmark = [pytest.mark.django_db, pytest.mark.services]
URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def client():
    require_service("Redis", URL)
    return redis.Redis.from_url(URL)


@pytest.fixture
def answer(owner, client):
    """An answer streaming on worker `w-gone`, whose log holds a start and two tokens, and whose
    last checkpoint is behind the log (as after a kill -9)."""
    conversation = Conversation.objects.create(owner=owner)
    message = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", worker="w-gone",
        content="Once",
    )
    for key in (tokenlog.stream_key(message.pk), tokenlog.owner_key(message.pk),
                tokenlog.task_key(message.pk), tokenlog.heartbeat_key("w-gone")):
        client.delete(key)
    client.set(tokenlog.owner_key(message.pk), "w-gone")
    log = [envelopes.start(message=message.pk, conversation=conversation.pk, adapter=None),
           envelopes.token(message=message.pk, text="Once", index=0),
           envelopes.token(message=message.pk, text=" upon", index=1)]
    for seq, envelope in enumerate(log):
        assert tokenlog.append_as(client, "w-gone", message.pk, seq, envelope)
    return message


def test_it_saves_the_text_of_the_log_not_the_last_checkpoint(client, answer):
    assert reaper.reap_once(client) == [answer.pk]

    answer.refresh_from_db()
    assert (answer.status, answer.error_code, answer.content) == ("error", "worker_lost", "Once upon")
    log = [tokenlog.decode(fields) for _, fields in client.xrange(tokenlog.stream_key(answer.pk))]
    assert [e["type"] for e in log[-2:]] == ["inference.error", "inference.end"]
    assert [e for e in log if e["type"] == "inference.end"] == [log[-1]]


def test_a_worker_that_comes_back_cannot_append_after_the_reaper(client, answer):
    reaper.reap_once(client)
    length = client.xlen(tokenlog.stream_key(answer.pk))

    late = envelopes.token(message=answer.pk, text=" a time", index=2)
    assert not tokenlog.append_as(client, "w-gone", answer.pk, length, late)
    assert client.xlen(tokenlog.stream_key(answer.pk)) == length


def test_an_append_retried_after_its_reply_was_lost_counts_once(client, answer):
    token = envelopes.token(message=answer.pk, text=" a", index=2)

    assert tokenlog.append_as(client, "w-gone", answer.pk, 3, token)
    assert tokenlog.append_as(client, "w-gone", answer.pk, 3, token)
    assert client.xlen(tokenlog.stream_key(answer.pk)) == 4


def test_it_leaves_alone_an_answer_whose_worker_still_beats(client, answer):
    client.set(tokenlog.heartbeat_key("w-gone"), "alive", px=10_000)

    assert reaper.reap_once(client) == []
    answer.refresh_from_db()
    assert answer.status == "streaming"
    client.delete(tokenlog.heartbeat_key("w-gone"))


# --- when it does not fail over (the failover itself: tests/topology/test_failover.py) ---------
def remember(client, answer, *, failovers=0, grammar=None, workers=("w-alive",)):
    """The task record the web tier writes, and live routing records for `workers`."""
    pipe = client.pipeline()
    params = {"max_new_tokens": 50, "temperature": 0.0, "grammar": grammar}
    failover.remember_task(pipe, answer.pk, params=params, kind="chat", grace_s=10, earlier=False)
    pipe.hset(tokenlog.task_key(answer.pk), "failovers", failovers)
    pipe.delete(tokenlog.WORKERS_KEY)
    for name in workers:
        task_routing.write_state(pipe, worker=name, adapters=[], live=0, capacity=16)
    pipe.execute()


@pytest.mark.parametrize("why", ["failover off", "past the limit", "no other worker",
                                 "constrained", "budget spent"])
def test_it_ends_the_answer_as_before_when_it_may_not_or_cannot_fail_over(
    client, answer, settings, caplog, why
):
    settings.FAILOVER_MAX = 0 if why == "failover off" else 1
    remember(
        client, answer, failovers=1 if why == "past the limit" else 0,
        grammar='start: "x"' if why == "constrained" else None,
        workers=("w-gone",) if why == "no other worker" else ("w-alive",),
    )
    if why == "budget spent":
        params = {"max_new_tokens": 2, "temperature": 0.0}
        client.hset(tokenlog.task_key(answer.pk), "params", json.dumps(params))

    assert reaper.reap_once(client) == [answer.pk]

    assert "failover failed" not in caplog.text  # declined, not broken
    answer.refresh_from_db()
    assert (answer.status, answer.error_code, answer.content) == ("error", "worker_lost", "Once upon")
    log = [tokenlog.decode(fields) for _, fields in client.xrange(tokenlog.stream_key(answer.pk))]
    assert [e["type"] for e in log[-2:]] == ["inference.error", "inference.end"]
    assert "inference.notice" not in [e["type"] for e in log]
    client.delete(tokenlog.WORKERS_KEY)
