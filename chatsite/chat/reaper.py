"""Ends generations whose worker went silent (docs/ARCHITECTURE.md, "Failures").

Workers refresh a heartbeat key that expires after WORKER_LOST_AFTER_S. An answer still
streaming whose worker's heartbeat is gone is ended as `error` / `worker_lost` with its last
checkpoint, and its token log gets the error and the end, so live clients hear about it.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import close_old_connections

from chatsite.chat import envelopes, services, tokenlog
from chatsite.chat.errors import ChatError
from chatsite.chat.models import Message

log = logging.getLogger(__name__)

LOST = ChatError(
    "worker_lost",
    "The worker generating this answer stopped responding; the text so far is kept.",
)


def reap_once(redis) -> list[int]:
    reaped = []
    streaming = Message.objects.filter(status=Message.Status.STREAMING).exclude(worker="")
    for message_id, worker in streaming.values_list("id", "worker"):
        if redis.exists(tokenlog.heartbeat_key(worker)):
            continue
        if services.generation_worker_lost(message_id=message_id, message=LOST.message):
            _announce(redis, message_id)
            reaped.append(message_id)
            log.warning("answer %s: worker %s went silent; ended as worker_lost", message_id, worker)
    return reaped


def _announce(redis, message_id: int) -> None:
    key = tokenlog.stream_key(message_id)
    last = redis.xrevrange(key, count=1)
    seq = tokenlog.seq_of(last[0][0]) + 1 if last else 0
    tokenlog.append(redis, message_id, seq, envelopes.error(LOST, message=message_id))
    tokenlog.append(redis, message_id, seq + 1, envelopes.end(message=message_id, reason="error"))
    tokenlog.close(redis, message_id)


def reap_forever(interval_s: float | None = None) -> None:
    redis = tokenlog.sync_client()
    interval_s = interval_s or settings.WORKER_HEARTBEAT_S
    while True:
        close_old_connections()
        reap_once(redis)
        time.sleep(interval_s)
