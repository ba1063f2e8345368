"""The durable token log of celery mode (docs/ARCHITECTURE.md, "Celery mode").

Each generation's envelopes go to one Redis Stream, `patchbay:gen:<message id>`, with explicit
entry ids `0-<seq + 1>`, so a stream id *is* the event's sequence number: resuming after sequence
`k` is an XREAD from `0-<k + 1>`, with no gap and no duplicate. The web tier writes the start
event when it enqueues; the worker writes every later event. After the end the stream is kept
for `TOKEN_LOG_TTL_S`, then the saved message stands in for it.

Beside the stream:
- `...:watchers`, a sorted set of web-side watcher ids scored by the time their lease expires;
  web processes renew leases while a client follows, so a dead web process stops counting.
- `...:stop`, set when a user presses Stop, so a stop sent before the worker starts still counts.
- `patchbay:db<N>:control`, a pub/sub channel that wakes workers at once on stop or on a client
  leaving. Redis pub/sub ignores the database number, so the channel's name carries it: two
  deployments that share one Redis server on different databases never hear each other.
- `patchbay:worker:<name>`, each worker's heartbeat, expiring when the worker goes silent.
- `patchbay:workers` and `patchbay:workers:routed`, the routing registry (`task_routing.py`):
  what each live worker holds and how busy it is, and the tasks sent to its own queue that it
  has not started yet.
"""

from __future__ import annotations

import json
import time

from django.conf import settings

PREFIX = "patchbay"
WORKERS_KEY = f"{PREFIX}:workers"
ROUTED_KEY = f"{PREFIX}:workers:routed"
WATCH_LEASE_S = 6.0  # a watcher renews every WATCH_LEASE_S / 3


def control_channel() -> str:
    from redis.connection import parse_url

    return f"{PREFIX}:db{parse_url(settings.REDIS_URL).get('db', 0)}:control"


def stream_key(message_id: int) -> str:
    return f"{PREFIX}:gen:{message_id}"


def watchers_key(message_id: int) -> str:
    return f"{PREFIX}:gen:{message_id}:watchers"


def stop_key(message_id: int) -> str:
    return f"{PREFIX}:gen:{message_id}:stop"


def owner_key(message_id: int) -> str:
    return f"{PREFIX}:gen:{message_id}:worker"


def heartbeat_key(worker: str) -> str:
    return f"{PREFIX}:worker:{worker}"


def entry_id(seq: int) -> str:
    return f"0-{seq + 1}"


def seq_of(entry: bytes | str) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split("-")[1]) - 1


def append(redis, message_id: int, seq: int, envelope: dict) -> None:
    redis.xadd(stream_key(message_id), {"e": json.dumps(envelope)}, id=entry_id(seq))


def close(redis, message_id: int) -> None:
    """After the end: keep the log (and its side keys) a while for late readers, then drop it."""
    ttl = int(settings.TOKEN_LOG_TTL_S)
    pipe = redis.pipeline()
    for key in (stream_key(message_id), watchers_key(message_id), stop_key(message_id),
                owner_key(message_id)):
        pipe.expire(key, ttl)
    pipe.execute()


def decode(fields: dict) -> dict:
    raw = fields.get(b"e", fields.get("e"))
    return json.loads(raw)


def live_watchers(redis, message_id: int) -> int:
    return redis.zcount(watchers_key(message_id), time.time(), "+inf")


def publish(redis, message_id: int, op: str) -> None:
    redis.publish(control_channel(), json.dumps({"message": message_id, "op": op}))


# --- clients ----------------------------------------------------------------------------------
_sync_client = None
_async_clients: dict[int, object] = {}


def sync_client():
    """One client per process for threads (worker tasks, reaper)."""
    global _sync_client
    if _sync_client is None:
        import redis

        _sync_client = redis.Redis.from_url(settings.REDIS_URL)
    return _sync_client


def async_client():
    """One client per event loop: redis.asyncio connections belong to the loop that made them."""
    import asyncio

    import redis.asyncio

    loop = asyncio.get_running_loop()
    client = _async_clients.get(id(loop))
    if client is None or getattr(client, "_patchbay_loop", None) is not loop:
        # Every follower holds a connection during its blocking XREAD: past the pool's size
        # the next one waits for a free connection rather than failing.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=settings.REDIS_MAX_CONNECTIONS, timeout=30
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        client._patchbay_loop = loop
        _async_clients[id(loop)] = client
    return client
