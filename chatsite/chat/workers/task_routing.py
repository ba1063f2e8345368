"""Adapter-affinity routing in celery mode (docs/ARCHITECTURE.md, "Routing in celery mode").

Every worker consumes the shared queue `gpu` and a queue of its own, `gpu.<worker>`. With each
heartbeat it writes its record to the hash `patchbay:workers`: the adapters its engine holds, its
live generations, its capacity (pool threads) and the time the record goes stale. The web tier
reads that hash in one round trip, with `patchbay:workers:routed` (the tasks it sent to each
worker's own queue that the worker has not started yet), and picks a queue:

1. the least busy worker with room that holds the adapter (a cache hit; `affinity`);
2. else the least busy worker with room (`least_busy`; always so for the base model), the one
   holding fewer adapters on a tie;
3. else `gpu`, where whichever worker frees a thread first takes it (`shared`): with no record
   (no worker has written one yet) or every worker full, waiting for one worker would cost more
   than an adapter load.

A record goes stale after three heartbeats, much sooner than the reaper gives up on a worker
(WORKER_LOST_AFTER_S): wrongly skipping a live worker costs one cache hit, while routing to a
dead one strands the task until the reaper ends its answer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from django.conf import settings

from chatsite.chat.ops import metrics
from chatsite.chat.streams import tokenlog

SHARED_QUEUE = "gpu"
STALE_AFTER_HEARTBEATS = 3


@dataclass(frozen=True)
class WorkerState:
    name: str
    adapters: frozenset[str] = frozenset()
    live: int = 0  # generations running, as of its last heartbeat
    capacity: int | None = None  # None: unknown, never counted as full
    routed: int = 0  # sent to its own queue since, not started yet

    @property
    def load(self) -> int:
        return self.live + self.routed

    @property
    def has_room(self) -> bool:
        return self.capacity is None or self.load < self.capacity


@dataclass(frozen=True)
class Route:
    queue: str
    worker: str | None  # None: the shared queue
    outcome: str  # "affinity", "least_busy" or "shared" (the metric's label)


SHARED = Route(SHARED_QUEUE, None, "shared")


def worker_queue(worker: str) -> str:
    return f"{SHARED_QUEUE}.{worker}"


# --- the choice (pure) --------------------------------------------------------------------------
def choose(workers: list[WorkerState], adapter: str | None) -> Route:
    """The queue for a request naming `adapter` (None: the base model, which every worker has)."""
    open_ = [worker for worker in workers if worker.has_room]
    holders = [worker for worker in open_ if adapter is not None and adapter in worker.adapters]
    if holders:
        return _to(_least_busy(holders), "affinity")
    if open_:
        return _to(_least_busy(open_), "least_busy")
    return SHARED


def _least_busy(workers: list[WorkerState]) -> WorkerState:
    # Ties go to the worker holding fewer adapters, so that adapters asked for one after another
    # spread over the workers' caches instead of crowding one; then to a stable order.
    return min(workers, key=lambda worker: (worker.load, len(worker.adapters), worker.name))


def _to(worker: WorkerState, outcome: str) -> Route:
    return Route(worker_queue(worker.name), worker.name, outcome)


def parse_registry(records: dict, routed: dict, now: float) -> list[WorkerState]:
    """The live workers from the two hashes as Redis returns them (bytes or str)."""
    routed = {_text(name): int(count) for name, count in routed.items()}
    workers = []
    for name, raw in records.items():
        record = json.loads(raw)
        if record["until"] < now:
            continue
        name = _text(name)
        workers.append(WorkerState(
            name=name,
            adapters=frozenset(record["adapters"]),
            live=record["live"],
            capacity=record.get("capacity"),
            routed=max(0, routed.get(name, 0)),
        ))
    return workers


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- the web side -------------------------------------------------------------------------------
async def route(redis, adapter: str | None) -> Route:
    """Pick the queue for one request, and count the decision."""
    chosen = SHARED
    if settings.ROUTING_AFFINITY:
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(tokenlog.WORKERS_KEY)
        pipe.hgetall(tokenlog.ROUTED_KEY)
        records, routed = await pipe.execute()
        chosen = choose(parse_registry(records, routed, time.time()), adapter)
    metrics.count_route(chosen.outcome)
    return chosen


def record(pipe, message_id: int, chosen: Route) -> None:
    """In the enqueuing pipeline: count the task against its worker at once (so a burst spreads
    before the next heartbeat), and name that worker as the answer's owner, so the reaper can
    end the answer if the worker dies before starting it."""
    pipe.delete(tokenlog.owner_key(message_id))
    if chosen.worker is not None:
        pipe.hincrby(tokenlog.ROUTED_KEY, chosen.worker, 1)
        pipe.set(tokenlog.owner_key(message_id), chosen.worker)


# --- the reaper side ----------------------------------------------------------------------------
def route_failover(redis, adapter: str | None, *, lost: str) -> Route | None:
    """Where an answer whose worker `lost` died goes on (failover.py): chosen as `route` does,
    among the other live workers; None when there is none."""
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(tokenlog.WORKERS_KEY)
    pipe.hgetall(tokenlog.ROUTED_KEY)
    records, routed = pipe.execute()
    workers = [w for w in parse_registry(records, routed, time.time()) if w.name != lost]
    if not workers:
        return None
    return choose(workers, adapter) if settings.ROUTING_AFFINITY else SHARED


# --- the worker side ----------------------------------------------------------------------------
def write_state(pipe, *, worker: str, adapters: list[str], live: int, capacity: int | None) -> None:
    """This worker's record, written with its heartbeat."""
    stale_s = min(STALE_AFTER_HEARTBEATS * settings.WORKER_HEARTBEAT_S, settings.WORKER_LOST_AFTER_S)
    state = {"adapters": adapters, "live": live, "capacity": capacity, "until": time.time() + stale_s}
    pipe.hset(tokenlog.WORKERS_KEY, worker, json.dumps(state))


def tasks_taken(pipe, worker: str, count: int) -> None:
    """With the record that counts them in `live`: tasks from this worker's own queue that
    started since its last heartbeat no longer wait."""
    if count:
        pipe.hincrby(tokenlog.ROUTED_KEY, worker, -count)


def forget_dead(redis, now: float | None = None) -> list[str]:
    """Drop the records of workers silent for WORKER_LOST_AFTER_S (the reaper calls this)."""
    now = time.time() if now is None else now
    dead = [
        _text(name)
        for name, raw in redis.hgetall(tokenlog.WORKERS_KEY).items()
        if json.loads(raw)["until"] + settings.WORKER_LOST_AFTER_S < now
    ]
    if dead:
        pipe = redis.pipeline()
        pipe.hdel(tokenlog.WORKERS_KEY, *dead)
        pipe.hdel(tokenlog.ROUTED_KEY, *dead)
        pipe.execute()
    return dead
