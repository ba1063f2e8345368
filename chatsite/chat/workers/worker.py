"""The GPU worker side of celery mode (docs/ARCHITECTURE.md, "Celery mode").

A worker process owns one engine; each Celery task (one pool thread per concurrent generation)
submits its request to that engine, so every task of the process shares the engine's batch. The
task thread then drives its generation: it writes each event to the token log, checkpoints the
text to the database every `checkpoints.EVERY_S`, applies Stop, the disconnect policy and the
stream caps, and saves the final state. Two daemon threads per process: a heartbeat, which also
writes the worker's routing record (task_routing.py), and a listener on the control channel that
wakes the right task at once on Stop or on a client leaving.

Redis may go away for a while (docs/ARCHITECTURE.md, "Worker loss and failover"): envelopes
then wait in the generation's `LogWriter` and are retried with backoff while the engine goes
on; both threads retry too. A worker that cannot publish for WORKER_LOST_AFTER_S stops
generating and hands the answer over: the reaper fails it over or ends it from its token log,
or the worker ends it once Redis is back. A task with `resume` goes on with an answer whose
worker died, after its log's last entry (failover.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
import time
from collections import deque

from django.conf import settings
from django.db import close_old_connections
from redis.exceptions import ConnectionError, RedisError

from chatsite.chat.conversations import services
from chatsite.chat.ops import metrics
from chatsite.chat.streams import checkpoints, envelopes, tokenlog
from chatsite.chat.workers import failover, task_routing
from chatsite.chat.workers.engine_holder import loaded_engine, local_engine
from chatsite.errors import ChatError
from inference.types import (
    Engine,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    TextDelta,
)

log = logging.getLogger(__name__)

POLICY_EVERY_S = 0.25
WORKER_NAME = metrics.PROCESS_NAME
# Retrying Redis: the first retry soon (a blip), then less and less often.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0
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
        self.engine: Engine | None = None
        # The web tier wrote the start event (seq 0) and, for a continuation, the earlier text
        # as token 0 (seq 1); new tokens are numbered after them. A failover goes on after the
        # log's last entry, its earlier text all the log's tokens.
        self.resume = resume
        if resume:
            self.log = LogWriter(redis, message_id, seq=resume["seq"], earlier=earlier)
            self.index_offset = resume["index"]
        else:
            self.log = LogWriter(redis, message_id, seq=1 if earlier else 0, earlier=earlier)
            self.index_offset = 1 if earlier else 0
        self.bytes = 0
        self.failed: Failed | None = None
        self.finished: Finished | None = None
        self.cancel_cause: str | None = None
        self.started_at = time.monotonic()
        self.unwatched_since: float | None = None
        self.saved_chars = -1
        self.metrics = metrics.GenerationMetrics()

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        finally:
            self.metrics.end()

    def _run(self) -> None:
        if self.resume:  # before anything else: followers learn why the answer paused
            self.log.append(
                envelopes.notice(failover.RESUMED, message=self.message_id, resumed=True)
            )
        try:
            self.engine = local_engine()
        except ChatError as err:
            self._on(Failed(err.code, err.message))
            self._on(Finished("error", 0, 0, None, 0.0))
            self._drive()
            return
        if self._stop_requested():
            self.cancel("stopped")
        self.engine.submit(self.request, self.events.put)
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
                self._on(item)
            drained = self.log.flush()
            if self.log.fenced:
                # The reaper ended this answer (we were silent too long): stop generating it.
                log.warning("answer %s was ended by the reaper; cancelling", self.message_id)
                self.cancel("interrupted")
                return
            if self.log.lost():
                self._hand_over()
                return
            if self.finished is not None and drained:
                self._finish(self.finished)
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

    def _on(self, event: Event) -> None:
        """Handle one engine event; `Finished` is kept until every envelope before it is out."""
        if isinstance(event, TextDelta):
            self.bytes += len(event.text.encode())
            self.metrics.token()
            index = event.index + self.index_offset
            self.log.append(
                envelopes.token(
                    message=self.message_id, text=event.text, index=index, tokens=event.tokens
                )
            )
            cause = services.cap_reached(
                text_bytes=self.bytes, elapsed_s=time.monotonic() - self.started_at
            )
            if cause:
                self.cancel(cause)
        elif isinstance(event, Failed):
            self.failed = event
            self.metrics.error(event.code)
            self.log.append(envelopes.error(ChatError(event.code, event.message), message=self.message_id))
        elif isinstance(event, Finished):
            self.finished = event

    def _finish(self, finished: Finished) -> None:
        """Every envelope is out: save the final state, then append the end."""
        if self.resume:  # the usage of the whole answer, its lost worker's tokens too
            finished = dataclasses.replace(
                finished, completion_tokens=finished.completion_tokens + self.resume["generated"]
            )
        services.generation_finish(
            worker=WORKER_NAME,
            message_id=self.message_id,
            content=self.log.text,
            finished=finished,
            cancel_cause=self.cancel_cause,
            error_code=self.failed.code if self.failed else "",
            error_text=self.failed.message if self.failed else "",
            end_event_id=self.log.seq + 1,  # the end is appended next
        )
        reason = services.end_reason(finished, self.cancel_cause)
        self.log.append(envelopes.end_of(finished, message=self.message_id, reason=reason))
        self.log.deliver()
        log.info("answer %s: ended (%s)", self.message_id, finished.reason)

    def _hand_over(self) -> None:
        """Redis has been out of reach for WORKER_LOST_AFTER_S: stop generating. The reaper ends
        the answer once our heartbeat is gone; should Redis come back before it does, we end it
        here, with the text that reached the log (what clients were shown)."""
        log.warning("answer %s: no Redis for %ss; stopping", self.message_id, settings.WORKER_LOST_AFTER_S)
        self.cancel("interrupted")
        self.log.discard_pending()
        if not self.log.wait_for_redis():
            return  # the reaper took it over, or Redis never came back
        if services.generation_worker_lost(
            message_id=self.message_id, message=CUT_OFF.message, content=self.log.text,
            worker=WORKER_NAME,
            end_event_id=self.log.seq + 2,  # after the error, appended next
        ):
            self.log.append(envelopes.error(CUT_OFF, message=self.message_id))
            self.log.append(envelopes.end(message=self.message_id, reason="error"))
            self.log.deliver()

    # --- policy ---------------------------------------------------------------------------------
    def cancel(self, cause: str) -> None:
        if self.cancel_cause is None and self.engine is not None:
            log.info("answer %s: cancelling (%s)", self.message_id, cause)
            self.cancel_cause = cause
            self.engine.cancel(self.request.id)

    def _on_control(self, op: str) -> None:
        log.info("answer %s: %s", self.message_id, op)
        if op == "stop":
            self.cancel("stopped")
        elif op == "detached":
            self._checkpoint()  # the last client left: its text is safe at once
            self._apply_policy(time.monotonic())

    def _apply_policy(self, now: float) -> None:
        """Cancel once nobody has followed the answer for STREAM_RESUME_GRACE_S."""
        if now - self.started_at > settings.STREAM_MAX_DURATION_S:
            self.cancel("timeout")
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


class LogWriter:
    """One generation's envelopes, appended in order to its token log as its worker's own
    (`tokenlog.append_as`). While Redis cannot be reached they wait here and are retried with
    backoff; `lost()` once that has lasted WORKER_LOST_AFTER_S, `fenced` once the reaper has
    taken the answer over."""

    def __init__(self, redis, message_id: int, seq: int, earlier: str = ""):
        self.redis = redis
        self.message_id = message_id
        self.seq = self.published_seq = seq
        self.pending: deque[tuple[int, dict]] = deque()
        self.published: list[str] = [earlier] if earlier else []  # the token texts in the log
        self.fenced = False
        self.failing_since: float | None = None
        self.retry_at = 0.0
        self.backoff = RETRY_FIRST_S

    @property
    def text(self) -> str:
        return "".join(self.published)

    def append(self, envelope: dict) -> None:
        self.seq += 1
        self.pending.append((self.seq, envelope))

    def flush(self) -> bool:
        """Append what waits, unless a retry is not due yet; True when nothing waits."""
        if self.fenced or not self.pending:
            return not self.pending
        now = time.monotonic()
        if now < self.retry_at:
            return False
        while self.pending:
            seq, envelope = self.pending[0]
            try:
                mine = tokenlog.append_as(self.redis, WORKER_NAME, self.message_id, seq, envelope)
            except RedisError:
                self._failed(now)
                return False
            if not mine:
                self.fenced = True
                self.pending.clear()
                return False
            self.pending.popleft()
            self.published_seq = seq
            if envelope["type"] == "inference.token":
                self.published.append(envelope["payload"]["text"])
        if self.failing_since is not None:
            log.warning("answer %s: Redis is back after %.1f s", self.message_id, now - self.failing_since)
        self.failing_since, self.backoff = None, RETRY_FIRST_S
        return True

    def _failed(self, now: float) -> None:
        if self.failing_since is None:
            self.failing_since = now
            log.warning("answer %s: cannot reach Redis; holding its envelopes", self.message_id)
        self.retry_at = now + self.backoff
        self.backoff = min(self.backoff * 2, RETRY_MAX_S)

    def lost(self) -> bool:
        return (
            self.failing_since is not None
            and time.monotonic() - self.failing_since >= settings.WORKER_LOST_AFTER_S
        )

    def discard_pending(self) -> None:
        """Forget what never reached the log: no client saw it."""
        self.pending.clear()
        self.seq = self.published_seq

    def deliver(self) -> None:
        """Flush until everything is out or the answer was taken over, then let the log expire.
        Gives up after TOKEN_LOG_TTL_S: by then a follower reads the saved answer instead."""
        deadline = time.monotonic() + settings.TOKEN_LOG_TTL_S
        while not self.flush() and not self.fenced and time.monotonic() < deadline:
            time.sleep(max(0.0, self.retry_at - time.monotonic()))
        if not self.pending and not self.fenced:
            _quietly(tokenlog.close, self.redis, self.message_id)

    def wait_for_redis(self) -> bool:
        """Until Redis answers again: True if the answer is still ours then, False if the
        reaper took it over (or TOKEN_LOG_TTL_S passed)."""
        deadline = time.monotonic() + settings.TOKEN_LOG_TTL_S
        while time.monotonic() < deadline:
            try:
                owner = self.redis.get(tokenlog.owner_key(self.message_id))
            except RedisError:
                self._failed(time.monotonic())
                time.sleep(max(0.0, self.retry_at - time.monotonic()))
                continue
            self.fenced = owner not in (None, WORKER_NAME.encode())
            return not self.fenced
        return False


def _quietly(call, *args) -> None:
    try:
        call(*args)
    except RedisError:
        log.warning("%s failed", call.__name__, exc_info=True)


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
