"""Ends generations whose worker went silent (docs/ARCHITECTURE.md, "Failures").

Workers refresh a heartbeat key that expires after WORKER_LOST_AFTER_S. An answer still
streaming whose worker's heartbeat is gone is ended as `error` / `worker_lost` with its last
checkpoint, and its token log gets the error and the end, so live clients hear about it. So is
an answer never started whose task the web tier sent to the own queue of a worker that is now
gone: no other worker reads that queue, so it would wait forever.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import close_old_connections

from chatsite.chat import envelopes, services, task_routing, tokenlog
from chatsite.chat.errors import ChatError
from chatsite.chat.models import Message

log = logging.getLogger(__name__)

LOST = ChatError(
    "worker_lost",
    "The worker generating this answer stopped responding; the text so far is kept.",
)


STRANDED = ChatError(
    "worker_lost",
    "The worker this answer was sent to stopped before starting it; please send it again.",
)


def reap_once(redis) -> list[int]:
    return _reap_streaming(redis) + _reap_stranded(redis)


def _reap_streaming(redis) -> list[int]:
    reaped = []
    streaming = Message.objects.filter(status=Message.Status.STREAMING).exclude(worker="")
    for message_id, worker in streaming.values_list("id", "worker"):
        if redis.exists(tokenlog.heartbeat_key(worker)):
            continue
        seq = _next_seq(redis, message_id)
        if services.generation_worker_lost(
            message_id=message_id, message=LOST.message, end_event_id=seq + 1
        ):
            _announce(redis, message_id, LOST, seq)
            reaped.append(message_id)
            log.warning("answer %s: worker %s went silent; ended as worker_lost", message_id, worker)
    return reaped


def _reap_stranded(redis) -> list[int]:
    """Pending answers routed to a worker whose heartbeat is gone (the web tier names the
    worker in the owner key when it enqueues; answers on the shared queue have none)."""
    pending = list(Message.objects.filter(status=Message.Status.PENDING).values_list("id", flat=True))
    if not pending:
        return []
    owners = redis.mget([tokenlog.owner_key(message_id) for message_id in pending])
    routed = {m: owner.decode() for m, owner in zip(pending, owners) if owner}
    reaped = []
    for message_id, worker in routed.items():
        if redis.exists(tokenlog.heartbeat_key(worker)):
            continue
        seq = _next_seq(redis, message_id)
        if services.generation_worker_lost(
            message_id=message_id, message=STRANDED.message, statuses=(Message.Status.PENDING,),
            end_event_id=seq + 1,
        ):
            _announce(redis, message_id, STRANDED, seq)
            reaped.append(message_id)
            log.warning("answer %s: its worker %s died before starting it; ended", message_id, worker)
    return reaped


def _next_seq(redis, message_id: int) -> int:
    last = redis.xrevrange(tokenlog.stream_key(message_id), count=1)
    return tokenlog.seq_of(last[0][0]) + 1 if last else 0


def _announce(redis, message_id: int, error: ChatError, seq: int) -> None:
    """The error at `seq` and the end after it (the end's id is saved with the answer)."""
    tokenlog.append(redis, message_id, seq, envelopes.error(error, message=message_id))
    tokenlog.append(redis, message_id, seq + 1, envelopes.end(message=message_id, reason="error"))
    tokenlog.close(redis, message_id)


def reap_forever(interval_s: float | None = None) -> None:
    redis = tokenlog.sync_client()
    interval_s = interval_s or settings.WORKER_HEARTBEAT_S
    while True:
        close_old_connections()
        reap_once(redis)
        task_routing.forget_dead(redis)
        time.sleep(interval_s)
