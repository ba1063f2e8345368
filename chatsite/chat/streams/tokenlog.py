"""The durable token log of celery mode (docs/ARCHITECTURE.md, "Celery mode").

Each generation's envelopes go to one Redis Stream (written through streams/event_log.py's
`RedisLog`), `patchbay:gen:<message id>`, with explicit
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
- `...:task`, a hash: the task the web tier queued (its sampling parameters, kind and grace) and
  how many times the answer has failed over to another worker since (`failover.py`).
- `...:worker`, the answer's owner: the worker the web tier routed it to, then the worker that
  claims it. A worker appends only while the owner key names it (or is missing); the reaper
  takes the key over before it ends an answer, so a worker that comes back from a Redis cut
  cannot write after the reaper's end (`append_as`, a script: check and append in one step).
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


def task_key(message_id: int) -> str:
    return f"{PREFIX}:gen:{message_id}:task"


def heartbeat_key(worker: str) -> str:
    return f"{PREFIX}:worker:{worker}"


def entry_id(seq: int) -> str:
    return f"0-{seq + 1}"


def seq_of(entry: bytes | str) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split("-")[1]) - 1


def open_log(pipe, message_id: int, opening: list[dict]) -> None:
    """In the enqueuing pipeline: a fresh log (a continued answer's earlier one goes) that
    holds the answer's opening, numbered from 0 (streams/lifecycle.py)."""
    pipe.delete(stream_key(message_id), stop_key(message_id))
    for seq, envelope in enumerate(opening):
        pipe.xadd(stream_key(message_id), {"e": json.dumps(envelope)}, id=entry_id(seq))


def control_notice(message_id: int, op: str) -> str:
    """A control-channel message: `op` ("stop", "detached") for the answer's worker."""
    return json.dumps({"message": message_id, "op": op})


# KEYS: the stream, its owner key; ARGV: the writer, the entry id, the envelope. 1: appended (or
# already there: a retry of an append whose reply was lost), 0: the answer belongs to another.
_APPEND_AS = """
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return 0 end
if #redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2]) > 0 then return 1 end
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #top > 0 and top[1][1] ~= ARGV[2] then
  local a, b = string.match(top[1][1], '(%d+)-(%d+)')
  local c, d = string.match(ARGV[2], '(%d+)-(%d+)')
  if tonumber(b) > tonumber(d) then return 0 end
end
redis.call('XADD', KEYS[1], ARGV[2], 'e', ARGV[3])
return 1
"""


def append_as(redis, writer: str, message_id: int, seq: int, envelope: dict) -> bool:
    """Append for `writer` while the answer is still its own; False once someone else (the
    reaper) has taken it. Safe to retry: an entry already written counts as appended."""
    global _append_script
    if _append_script is None:
        _append_script = redis.register_script(_APPEND_AS)
    keys = [stream_key(message_id), owner_key(message_id)]
    args = [writer, entry_id(seq), json.dumps(envelope)]
    return bool(_append_script(keys=keys, args=args, client=redis))


_append_script = None


REAPER = "reaper"


def take_over(redis, message_id: int) -> list[dict] | None:
    """Make the answer the reaper's (its worker can append nothing more), then its whole log as
    it stands: everything any client can have been shown. None when there is no log."""
    redis.set(owner_key(message_id), REAPER)
    entries = redis.xrange(stream_key(message_id))
    return [decode(fields) for _, fields in entries] if entries else None


def last_seq(redis, message_id: int) -> int:
    """The sequence number of the log's last entry; -1 when it has none."""
    last = redis.xrevrange(stream_key(message_id), count=1)
    return seq_of(last[0][0]) if last else -1


def close(redis, message_id: int, ttl: float) -> None:
    """After the end: keep the log (and its side keys) `ttl` s for late readers, then drop it."""
    ttl = int(ttl)
    pipe = redis.pipeline()
    for key in (stream_key(message_id), watchers_key(message_id), stop_key(message_id),
                owner_key(message_id), task_key(message_id)):
        pipe.expire(key, ttl)
    pipe.execute()


def decode(fields: dict) -> dict:
    raw = fields.get(b"e", fields.get("e"))
    return json.loads(raw)


def live_watchers(redis, message_id: int) -> int:
    return redis.zcount(watchers_key(message_id), time.time(), "+inf")


# --- clients ----------------------------------------------------------------------------------
_sync_client = None
_async_clients: dict[int, object] = {}


def sync_client():
    """One client per process for threads (worker tasks, reaper). Each call retries a broken
    connection three times within about half a second, so a caller is not held long; the worker
    retries longer on top of that, without blocking its generation (worker.py)."""
    global _sync_client
    if _sync_client is None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        _sync_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2,
            health_check_interval=5, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        )
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
