"""Failover in celery mode (docs/ARCHITECTURE.md, "Worker loss and failover").

An answer whose worker died mid-stream need not end there: its token log holds every token any
client was shown, any worker can continue an answer from its text, and the routing registry
knows which live workers hold its adapter. So the reaper, up to `FAILOVER_MAX` times per answer,
queues the same answer again (same message, same log) on another live worker instead of ending
it. That worker appends after the log's last entry: an `inference.notice` (`worker_lost`,
`resumed`), then the rest of the answer, numbered on from where the log stopped, within what is
left of the answer's token budget. Past the limit, or with no live worker, the reaper ends the
answer `worker_lost` as before.

The web tier keeps, beside the log, the task it queued (`tokenlog.task_key`: sampling
parameters, kind, grace, whether the answer had earlier text) and the count of failovers.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings

from chatsite.chat.conversations import services
from chatsite.chat.streams import envelopes, tokenlog
from chatsite.chat.workers import task_routing
from chatsite.errors import ChatError

log = logging.getLogger(__name__)

RESUMED = ChatError(
    "worker_lost",
    "The worker generating this answer stopped responding; another worker goes on from the "
    "text so far.",
)


def remember_task(pipe, message_id: int, *, params: dict, kind: str, grace_s: float,
                  earlier: bool) -> None:
    """In the enqueuing pipeline: what the reaper needs to queue the answer again."""
    key = tokenlog.task_key(message_id)
    pipe.delete(key)
    pipe.hset(key, mapping={
        "params": json.dumps(params), "kind": kind, "grace_s": grace_s,
        "earlier": int(earlier), "failovers": 0,
    })


def resume(redis, message_id: int, *, lost_worker: str, entries: list[dict] | None) -> bool:
    """Queue the answer again on another live worker, going on from the text of `entries` (its
    whole log, taken over from `lost_worker`). False when it may not or cannot fail over: the
    caller ends it."""
    if settings.FAILOVER_MAX < 1 or not entries or entries[-1]["type"] == "inference.end":
        return False
    task = {k.decode(): v.decode() for k, v in redis.hgetall(tokenlog.task_key(message_id)).items()}
    if not task:  # queued by a web tier that kept no task record
        return False
    count = int(task["failovers"]) + 1
    tokens = [e["payload"] for e in entries if e["type"] == "inference.token"]
    # One token event per decoded delta: almost always one model token, never fewer.
    generated = len(tokens) - int(task["earlier"])
    params = json.loads(task["params"])
    remaining = params["max_new_tokens"] - generated
    if count > settings.FAILOVER_MAX or remaining < 1:
        return False
    if params.get("grammar") and tokens:
        # A constrained answer cannot go on mid-way: the grammar would start again at its top.
        return False
    adapter = entries[0]["payload"].get("adapter") if entries[0]["type"] == "inference.start" else None
    chosen = task_routing.route_failover(redis, adapter, lost=lost_worker)
    text = envelopes.text_of(entries)
    if chosen is None or not services.generation_fail_over(
        message_id=message_id, lost_worker=lost_worker, content=text
    ):
        return False
    # With text, a chat answer goes on as a continuation of itself (a raw one's prompt grows).
    kind = services.CONTINUE if text and task["kind"] == services.CHAT else task["kind"]
    point = {
        "seq": tokenlog.last_seq(redis, message_id),
        "index": tokens[-1]["index"] + 1 if tokens else 0,
        "generated": generated,
        "failover": count,
    }
    try:
        _enqueue(redis, message_id, chosen, (message_id, {**params, "max_new_tokens": remaining},
                                              kind, float(task["grace_s"])), point)
    except Exception:  # the broker is away: the caller ends the answer instead
        log.warning("answer %s: could not queue its failover", message_id, exc_info=True)
        return False
    log.warning("answer %s: worker %s went silent; failover %s to %s", message_id, lost_worker,
                count, chosen.queue)
    return True


def _enqueue(redis, message_id: int, chosen: task_routing.Route, args: tuple, point: dict) -> None:
    from chatsite.chat.workers.tasks import generate

    pipe = redis.pipeline()
    pipe.hset(tokenlog.task_key(message_id), "failovers", point["failover"])
    if chosen.worker is not None:
        task_routing.record(pipe, message_id, chosen)
    # On the shared queue the owner key stays the reaper's: the lost worker, should it come
    # back, still can append nothing, and the worker that claims the answer takes the key.
    pipe.execute()
    generate.apply_async(args, {"routed_to": chosen.worker, "resume": point}, queue=chosen.queue)
