"""Ends generations whose worker went silent, or fails them over (docs/ARCHITECTURE.md,
"Worker loss and failover").

Workers refresh a heartbeat key that expires after WORKER_LOST_AFTER_S. An answer still
streaming whose worker's heartbeat is gone is taken over (its worker, should it come back, can
append nothing more). Then, while `FAILOVER_MAX` allows and another worker is alive, it is
queued again on that worker, which goes on from the log's text (failover.py); otherwise it is
ended as `error` / `worker_lost` with the text of its token log (what any client was shown; the
last checkpoint when the log is gone), and its log gets the error and the end, so live clients
hear about it (streams/lifecycle.py's `end_lost`, appended as the reaper's). So is an answer
never started whose task the web tier sent to the own queue of a worker that is now gone: no
other worker reads that queue, so it would wait forever.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from redis.exceptions import RedisError

from chatsite.chat.conversations import services
from chatsite.chat.models import Message
from chatsite.chat.streams import envelopes, follow, lifecycle, tokenlog
from chatsite.chat.streams.event_log import RedisLog
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
    content = envelopes.text_of(entries) if entries else None
    answer_log = _reapers_log(redis, message_id)
    if lifecycle.end_lost(
        answer_log, message_id, LOST, save=services.generation_worker_lost, content=content
    ):
        answer_log.deliver()
    elif entries and entries[-1]["type"] != "inference.end":
        # Its worker saved the end just now but can no longer append it: end the log as saved.
        saved = Message.objects.select_related("adapter").get(pk=message_id)
        for envelope in follow.from_saved(saved)[-2 if saved.error_code else -1:]:
            answer_log.append(envelope)
        answer_log.deliver()
    return True


def _reapers_log(redis, message_id: int) -> RedisLog:
    """The answer's log as the reaper, who has taken it over, appends to it."""
    seq = tokenlog.last_seq(redis, message_id)
    return RedisLog(redis, message_id, writer=tokenlog.REAPER, seq=seq)


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
        answer_log = _reapers_log(redis, message_id)
        if lifecycle.end_lost(
            answer_log, message_id, STRANDED, save=services.generation_worker_lost,
            statuses=(Message.Status.PENDING,),
        ):
            # Saved as ended, so no worker can claim it now: the log is the reaper's to end.
            tokenlog.take_over(redis, message_id)
            answer_log.deliver()
            reaped.append(message_id)
            log.warning("answer %s: its worker %s died before starting it; ended", message_id, worker)
    return reaped


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
