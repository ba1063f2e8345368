"""The GPU worker side of celery mode (docs/ARCHITECTURE.md, "Celery mode").

A worker process owns one engine; each Celery task (one pool thread per concurrent generation)
submits its request to that engine, so every task of the process shares the engine's batch. The
task thread then drives its generation: it writes each event to the token log, checkpoints the
text to the database every `checkpoints.EVERY_S`, applies Stop, the disconnect policy and the
stream caps, and saves the final state. Two daemon threads per process: a heartbeat, which also
writes the worker's routing record (task_routing.py), and a listener on the control channel that
wakes the right task at once on Stop or on a client leaving.

The answer's lifecycle (streams/lifecycle.py) maps events to envelopes, checks the caps, and
saves the end before it appends it. Redis may go away for a while (docs/ARCHITECTURE.md,
"Worker loss and failover"): envelopes then wait in the generation's `RedisLog` and are retried with backoff while the engine goes
on; both threads retry too. A worker that cannot publish for WORKER_LOST_AFTER_S stops
generating and hands the answer over: the reaper fails it over or ends it from its token log,
or the worker ends it once Redis is back. A task with `resume` goes on with an answer whose
worker died, after its log's last entry (failover.py).
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time

from django.conf import settings
from django.db import close_old_connections
from redis.exceptions import ConnectionError, RedisError

from chatsite.chat.conversations import services
from chatsite.chat.ops import metrics
from chatsite.chat.streams import checkpoints, lifecycle, tokenlog
from chatsite.chat.streams.event_log import RETRY_FIRST_S, RETRY_MAX_S, RedisLog
from chatsite.chat.workers import failover, task_routing
from chatsite.chat.workers.engine_holder import loaded_engine, local_engine
from chatsite.errors import ChatError
from inference.types import Event, GenerationRequest

log = logging.getLogger(__name__)

POLICY_EVERY_S = 0.25
WORKER_NAME = metrics.PROCESS_NAME
CONTROL_SILENCE_S = 6.0  # the control connection counts as lost after this long without a pong
CUT_OFF = ChatError(
    "worker_lost",
    "The worker generating this answer lost its connection to Redis; the text so far is kept.",
)

_live: dict[int, WorkerGeneration] = {}
_started = threading.Lock()
_threads_running = False
# For the routing record (task_routing.py), guarded by _counts: tasks in `generate` now, and
# tasks from this worker's own queue started since the last heartbeat. The heartbeat moves the
# latter from the web tier's routed count to `live` in one transaction, so a task is never
# counted twice nor missed in between.
_counts = threading.Lock()
_running = 0
_taken_since_beat = 0
_capacity: int | None = None  # pool threads


def generate(
    message_id: int, params: dict, kind: str, grace_s: float, routed_to: str | None = None,
    resume: dict | None = None,
) -> None:
    """Run one generation to its end in this thread (called by the Celery task).

    `grace_s` comes from the web tier that took the request: the disconnect policy is the web
    tier's setting, the worker only applies it. `routed_to` names the worker whose own queue
    the task was sent to (None: the shared queue). `resume`: this answer failed over from a
    worker that died (failover.py): the log's last `seq`, the next token `index`, the tokens
    `generated` before and which `failover` this is."""
    global _running, _taken_since_beat
    with _counts:
        _running += 1
        _taken_since_beat += routed_to == WORKER_NAME
    try:
        _generate(message_id, params, kind, grace_s, resume)
    finally:
        with _counts:
            _running -= 1


def _generate(
    message_id: int, params: dict, kind: str, grace_s: float, resume: dict | None
) -> None:
    _ensure_process_threads()
    redis = tokenlog.sync_client()
    if not services.generation_claim(message_id=message_id, worker=WORKER_NAME):
        log.info("message %s was claimed or ended already; not generating it again", message_id)
        return
    try:
        redis.set(tokenlog.owner_key(message_id), WORKER_NAME)
    except RedisError:  # the web tier named this worker (or none): appends are allowed either way
        log.warning("answer %s: owner key not written", message_id)
    request = services.generation_request(message_id=message_id, params=params, kind=kind)
    earlier = services.generation_earlier_text(message_id=message_id)
    generation = WorkerGeneration(message_id, request, redis, grace_s, earlier, resume)
    # A generation lasts seconds to minutes: its thread gives its database connection back
    # between writes, so that a pool far smaller than the pool threads serves them all.
    close_old_connections()
    _live[message_id] = generation
    try:
        generation.run()
    finally:
        _live.pop(message_id, None)


class WorkerGeneration:
    def __init__(
        self, message_id: int, request: GenerationRequest, redis, grace_s: float, earlier: str,
        resume: dict | None = None,
    ):
        self.message_id = message_id
        self.grace_s = grace_s
        self.request = request
        self.redis = redis
        self.events: queue.Queue[Event | str] = queue.Queue()
        # The web tier wrote the log's opening (the start, seq 0, and for a continuation the
        # earlier text as token 0, seq 1); new tokens are numbered after them. A failover goes
        # on after the log's last entry, its earlier text all the log's tokens.
        self.resume = resume
        seq, index = (resume["seq"], resume["index"]) if resume else ((1, 1) if earlier else (0, 0))
        self.log = RedisLog(redis, message_id, writer=WORKER_NAME, seq=seq, earlier=earlier)
        self.life = lifecycle.AnswerLifecycle(
            message_id, self.log, index_offset=index,
            generated_before=resume["generated"] if resume else 0,
        )
        self.unwatched_since: float | None = None
        self.saved_chars = -1

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        finally:
            self.life.metrics.end()

    def _run(self) -> None:
        if self.resume:  # before anything else: followers learn why the answer paused
            self.life.notice(failover.RESUMED, resumed=True)
        try:
            engine = local_engine()
        except ChatError as err:
            self.life.refuse(err)
            self._drive()
            return
        self.life.attach(engine, self.request.id)
        if self._stop_requested():
            self.cancel("stopped")
        engine.submit(self.request, self.events.put)
        self._drive()

    def _drive(self) -> None:
        """Until the answer has ended: events in, envelopes out, policy and checkpoints."""
        next_checkpoint = next_policy = time.monotonic()
        while True:
            try:
                item = self.events.get(timeout=POLICY_EVERY_S / 2)
            except queue.Empty:
                item = None
            if isinstance(item, str):
                self._on_control(item)
            elif item is not None:
                self.life.on_event(item)  # `finished` is acted on once every envelope is out
            drained = self.log.flush()
            if self.log.fenced:
                # The reaper ended this answer (we were silent too long): stop generating it.
                log.warning("answer %s was ended by the reaper; cancelling", self.message_id)
                self.cancel("interrupted")
                return
            if self.log.lost():
                self._hand_over()
                return
            if self.life.finished is not None and drained:
                self._finish()
                return
            now = time.monotonic()
            if now >= next_policy:
                self._apply_policy(now)
                next_policy = now + POLICY_EVERY_S
            if now >= next_checkpoint:
                self._checkpoint()
                next_checkpoint = now + checkpoints.EVERY_S

    def _stop_requested(self) -> bool:
        try:
            return bool(self.redis.exists(tokenlog.stop_key(self.message_id)))
        except RedisError:  # the control channel still delivers a later Stop
            return False

    def _finish(self) -> None:
        """Every envelope is out: the lifecycle saves the final state, then appends the end."""
        self.life.finish(functools.partial(services.generation_finish, worker=WORKER_NAME))
        self.log.deliver()
        log.info("answer %s: ended (%s)", self.message_id, self.life.finished.reason)

    def _hand_over(self) -> None:
        """Redis has been out of reach for WORKER_LOST_AFTER_S: stop generating. The reaper ends
        the answer once our heartbeat is gone; should Redis come back before it does, we end it
        here, with the text that reached the log (what clients were shown)."""
        log.warning("answer %s: no Redis for %ss; stopping", self.message_id, settings.WORKER_LOST_AFTER_S)
        self.cancel("interrupted")
        self.log.discard_pending()
        if not self.log.wait_for_redis():
            return  # the reaper took it over, or Redis never came back
        if lifecycle.end_lost(
            self.log, self.message_id, CUT_OFF, save=services.generation_worker_lost,
            content=self.log.text, worker=WORKER_NAME,
        ):
            self.log.deliver()

    # --- policy ---------------------------------------------------------------------------------
    def cancel(self, cause: str) -> None:
        if self.life.cancel(cause):
            log.info("answer %s: cancelling (%s)", self.message_id, cause)

    def _on_control(self, op: str) -> None:
        log.info("answer %s: %s", self.message_id, op)
        if op == "stop":
            self.cancel("stopped")
        elif op == "detached":
            self._checkpoint()  # the last client left: its text is safe at once
            self._apply_policy(time.monotonic())

    def _apply_policy(self, now: float) -> None:
        """The caps, then: cancel once nobody has followed the answer for the grace period."""
        self.life.check_caps()
        try:
            watched = tokenlog.live_watchers(self.redis, self.message_id)
        except RedisError:  # unknown while Redis is away: never cancel on a guess
            return
        if watched:
            self.unwatched_since = None
            return
        if self.unwatched_since is None:
            self.unwatched_since = now
        if now - self.unwatched_since >= self.grace_s:
            self.cancel("interrupted")

    # --- writes ---------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        # What reached the log, never more: the saved text is always text a client could see.
        text = self.log.text
        if len(text) != self.saved_chars:
            self.saved_chars = len(text)
            services.generation_checkpoint(message_id=self.message_id, content=text, worker=WORKER_NAME)
            close_old_connections()


# --- per-process threads --------------------------------------------------------------------
def start_process() -> None:
    """Heartbeat and control threads, and the engine, when the worker starts."""
    _ensure_process_threads()
    metrics.start_worker_server()
    try:
        local_engine()
    except ChatError as err:
        log.error("%s", err.message)


def _ensure_process_threads() -> None:
    global _threads_running
    with _started:
        if not _threads_running:
            _threads_running = True
            for target in (_heartbeat, _listen_for_control):
                threading.Thread(target=target, name=target.__name__, daemon=True).start()


def set_capacity(threads: int) -> None:
    global _capacity
    _capacity = threads


def _heartbeat() -> None:
    redis = tokenlog.sync_client()
    while True:
        try:
            _beat(redis)
        except RedisError:  # a blip must not end the thread: the next beat may land in time
            log.warning("heartbeat not written", exc_info=True)
        time.sleep(settings.WORKER_HEARTBEAT_S)


def _beat(redis) -> None:
    global _taken_since_beat
    with _counts:
        live, taken = _running, _taken_since_beat
        _taken_since_beat = 0
    pipe = redis.pipeline()  # MULTI: the record and the routed count change together
    pipe.set(tokenlog.heartbeat_key(WORKER_NAME), "alive", px=int(settings.WORKER_LOST_AFTER_S * 1000))
    task_routing.write_state(
        pipe, worker=WORKER_NAME, adapters=_resident_adapters(), live=live, capacity=_capacity
    )
    task_routing.tasks_taken(pipe, WORKER_NAME, taken)
    try:
        pipe.execute()
    except RedisError:
        with _counts:
            _taken_since_beat += taken
        raise


def _resident_adapters() -> list[str]:
    """What this worker's engine holds now; never loads the engine."""
    resident = getattr(loaded_engine(), "resident_adapters", None)
    return resident() if resident else []


def _listen_for_control() -> None:
    """Forever: a lost connection is retried with backoff and the channel subscribed again, so
    Stop keeps working on this worker after Redis comes back."""
    backoff = RETRY_FIRST_S
    while True:
        try:
            _follow_control(tokenlog.sync_client())
        except RedisError:
            log.warning("control channel lost; subscribing again in %.1f s", backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX_S)
        else:  # pragma: no cover - _follow_control only returns by raising
            backoff = RETRY_FIRST_S


def _follow_control(redis) -> None:
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    try:
        channel = tokenlog.control_channel()
        pubsub.subscribe(channel)
        log.info("listening on %s", channel)
        _stops_missed(redis)
        pinged_at, ponged_at = 0.0, time.monotonic()
        while True:
            # Our own liveness check: a connection that silently lost its subscription, or
            # whose peer vanished, would otherwise wait here forever while Stops go unheard.
            now = time.monotonic()
            if not pubsub.subscribed or now - ponged_at > CONTROL_SILENCE_S:
                raise ConnectionError("no answer on the control channel")
            if now - pinged_at > CONTROL_SILENCE_S / 3:
                pubsub.ping()
                pinged_at = now
            item = pubsub.get_message(timeout=0.5)
            if item is None:
                continue
            if item["type"] == "pong":
                ponged_at = time.monotonic()
            elif item["type"] == "message":
                _deliver(json.loads(item["data"]))
    finally:
        pubsub.close()


def _deliver(notice: dict) -> None:
    generation = _live.get(notice["message"])
    if generation is not None:
        generation.events.put(notice["op"])


def _stops_missed(redis) -> None:
    """A Stop published while we were not subscribed is lost; its stop key is not."""
    for message_id in list(_live):
        if redis.exists(tokenlog.stop_key(message_id)):
            _deliver({"message": message_id, "op": "stop"})
