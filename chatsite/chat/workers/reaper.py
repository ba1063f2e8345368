"""Ends generations whose worker went silent, or fails them over (docs/ARCHITECTURE.md,
"Worker loss and failover").

Workers refresh a heartbeat key that expires after WORKER_LOST_AFTER_S. An answer still
streaming whose worker's heartbeat is gone is taken over (its worker, should it come back, can
append nothing more). Then, while `FAILOVER_MAX` allows and another worker is alive, it is
queued again on that worker, which goes on from the log's text (failover.py); otherwise it is
ended as `error` / `worker_lost` with the text of its token log (what any client was shown; the
last checkpoint when the log is gone), and its log gets the error and the end, so live clients
hear about it. So is
an answer never started whose task the web tier sent to the own queue of a worker that is now
gone: no other worker reads that queue, so it would wait forever.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from redis.exceptions import RedisError

from chatsite.chat.conversations import services
from chatsite.chat.models import Message
from chatsite.chat.streams import envelopes, tokenlog
from chatsite.chat.workers import failover, task_routing
from chatsite.errors import ChatError

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
        if _end_lost(redis, message_id, worker):
            log.warning("answer %s: worker %s went silent; ended as worker_lost", message_id, worker)
        reaped.append(message_id)
    return reaped


def _end_lost(redis, message_id: int, worker: str) -> bool:
    """Take the answer over, then fail it over, or save what its log holds and end the log: in
    that order, so a client that saw the end reads the final text, and the worker cannot add to
    it meanwhile. False when it failed over."""
    entries = tokenlog.take_over(redis, message_id)
    try:
        if failover.resume(redis, message_id, lost_worker=worker, entries=entries):
            return False
    except Exception:  # a failover that cannot be made must not keep the answer from ending
        log.exception("answer %s: failover failed; ending it", message_id)
    content = tokenlog.text_of(entries) if entries else None
    seq = tokenlog.last_seq(redis, message_id) + 1
    if services.generation_worker_lost(
        message_id=message_id, message=LOST.message, content=content, end_event_id=seq + 1
    ):
        _announce(redis, message_id, LOST, seq)
    elif entries and entries[-1]["type"] != "inference.end":
        # Its worker saved the end just now but can no longer append it: end the log as saved.
        saved = Message.objects.select_related("adapter").get(pk=message_id)
        tail = envelopes.from_saved(saved)[-2 if saved.error_code else -1:]
        _append_all(redis, message_id, seq, tail)
    return True


def _reap_stranded(redis) -> list[int]:
    """Pending answers routed to a worker whose heartbeat is gone (the web tier names the
    worker in the owner key when it enqueues; answers on the shared queue have none)."""
    pending = list(Message.objects.filter(status=Message.Status.PENDING).values_list("id", flat=True))
    if not pending:
        return []
    owners = redis.mget([tokenlog.owner_key(message_id) for message_id in pending])
    # A failover sent to the shared queue leaves the owner key the reaper's: any worker takes it.
    routed = {
        m: owner.decode() for m, owner in zip(pending, owners)
        if owner and owner.decode() != tokenlog.REAPER
    }
    reaped = []
    for message_id, worker in routed.items():
        if redis.exists(tokenlog.heartbeat_key(worker)):
            continue
        seq = tokenlog.last_seq(redis, message_id) + 1
        if services.generation_worker_lost(
            message_id=message_id, message=STRANDED.message, statuses=(Message.Status.PENDING,),
            end_event_id=seq + 1,
        ):
            _announce(redis, message_id, STRANDED, seq)
            reaped.append(message_id)
            log.warning("answer %s: its worker %s died before starting it; ended", message_id, worker)
    return reaped


def _announce(redis, message_id: int, error: ChatError, seq: int) -> None:
    """The error at `seq` and the end after it (the end's id is saved with the answer)."""
    _append_all(redis, message_id, seq, [
        envelopes.error(error, message=message_id),
        envelopes.end(message=message_id, reason="error"),
    ])


def _append_all(redis, message_id: int, seq: int, tail: list[dict]) -> None:
    for offset, envelope in enumerate(tail):
        tokenlog.append(redis, message_id, seq + offset, envelope)
    tokenlog.close(redis, message_id)


def reap_forever(interval_s: float | None = None) -> None:
    redis = tokenlog.sync_client()
    interval_s = interval_s or settings.WORKER_HEARTBEAT_S
    while True:
        close_old_connections()
        try:
            reap_once(redis)
            task_routing.forget_dead(redis)
        except (RedisError, DatabaseError):  # the next round tries again; never die of a blip
            log.warning("reaper round failed", exc_info=True)
        time.sleep(interval_s)
