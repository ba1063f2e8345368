"""The GPU worker side of celery mode (docs/ARCHITECTURE.md, "Celery mode").

A worker process owns one engine; each Celery task (one pool thread per concurrent generation)
submits its request to that engine, so every task of the process shares the engine's batch. The
task thread then drives its generation: it writes each event to the token log, checkpoints the
text to the database every `checkpoints.EVERY_S`, applies Stop, the disconnect policy and the
stream caps, and saves the final state. Two daemon threads per process: a heartbeat, which also
writes the worker's routing record (task_routing.py), and a listener on the control channel that
wakes the right task at once on Stop or on a client leaving.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from django.conf import settings
from django.db import close_old_connections
from redis.exceptions import RedisError, ResponseError

from chatsite.chat import checkpoints, envelopes, metrics, services, task_routing, tokenlog
from chatsite.chat.engine import loaded_engine, local_engine
from chatsite.chat.errors import ChatError
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
    message_id: int, params: dict, kind: str, grace_s: float, routed_to: str | None = None
) -> None:
    """Run one generation to its end in this thread (called by the Celery task).

    `grace_s` comes from the web tier that took the request: the disconnect policy is the web
    tier's setting, the worker only applies it. `routed_to` names the worker whose own queue
    the task was sent to (None: the shared queue)."""
    global _running, _taken_since_beat
    with _counts:
        _running += 1
        _taken_since_beat += routed_to == WORKER_NAME
    try:
        _generate(message_id, params, kind, grace_s)
    finally:
        with _counts:
            _running -= 1


def _generate(message_id: int, params: dict, kind: str, grace_s: float) -> None:
    _ensure_process_threads()
    redis = tokenlog.sync_client()
    if not services.generation_claim(message_id=message_id, worker=WORKER_NAME):
        log.info("message %s was claimed or ended already; not generating it again", message_id)
        return
    redis.set(tokenlog.owner_key(message_id), WORKER_NAME)
    request = services.generation_request(message_id=message_id, params=params, kind=kind)
    earlier = services.generation_earlier_text(message_id=message_id)
    generation = WorkerGeneration(message_id, request, redis, grace_s, earlier)
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
        self, message_id: int, request: GenerationRequest, redis, grace_s: float, earlier: str
    ):
        self.message_id = message_id
        self.grace_s = grace_s
        self.request = request
        self.redis = redis
        self.events: queue.Queue[Event | str] = queue.Queue()
        self.engine: Engine | None = None
        # The web tier wrote the start event (seq 0) and, for a continuation, the earlier text
        # as token 0 (seq 1); new tokens are numbered after them.
        self.seq = 1 if earlier else 0
        self.index_offset = 1 if earlier else 0
        self.parts: list[str] = [earlier] if earlier else []
        self.bytes = 0
        self.failed: Failed | None = None
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
        try:
            self.engine = local_engine()
        except ChatError as err:
            self._on(Failed(err.code, err.message))
            self._on(Finished("error", 0, 0, None, 0.0))
            return
        if self.redis.exists(tokenlog.stop_key(self.message_id)):
            self.cancel("stopped")
        self.engine.submit(self.request, self.events.put)
        next_checkpoint = next_policy = time.monotonic()
        while True:
            try:
                item = self.events.get(timeout=POLICY_EVERY_S / 2)
            except queue.Empty:
                item = None
            if isinstance(item, str):
                self._on_control(item)
            elif item is not None and self._on(item):
                return
            now = time.monotonic()
            if now >= next_policy:
                self._apply_policy(now)
                next_policy = now + POLICY_EVERY_S
            if now >= next_checkpoint:
                self._checkpoint()
                next_checkpoint = now + checkpoints.EVERY_S

    def _on(self, event: Event) -> bool:
        """Handle one engine event; True once the generation has ended."""
        if isinstance(event, TextDelta):
            self.parts.append(event.text)
            self.bytes += len(event.text.encode())
            self.metrics.token()
            index = event.index + self.index_offset
            self._append(envelopes.token(message=self.message_id, text=event.text, index=index))
            cause = services.cap_reached(
                text_bytes=self.bytes, elapsed_s=time.monotonic() - self.started_at
            )
            if cause:
                self.cancel(cause)
        elif isinstance(event, Failed):
            self.failed = event
            self.metrics.error(event.code)
            self._append(envelopes.error(ChatError(event.code, event.message), message=self.message_id))
        elif isinstance(event, Finished):
            self._finish(event)
            return True
        return False

    def _finish(self, finished: Finished) -> None:
        services.generation_finish(
            message_id=self.message_id,
            content="".join(self.parts),
            finished=finished,
            cancel_cause=self.cancel_cause,
            error_code=self.failed.code if self.failed else "",
            error_text=self.failed.message if self.failed else "",
            end_event_id=self.seq + 1,  # the end is appended next
        )
        reason = services.end_reason(finished, self.cancel_cause)
        self._append(envelopes.end_of(finished, message=self.message_id, reason=reason))
        tokenlog.close(self.redis, self.message_id)
        log.info("answer %s: ended (%s)", self.message_id, finished.reason)

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
        if tokenlog.live_watchers(self.redis, self.message_id):
            self.unwatched_since = None
            return
        if self.unwatched_since is None:
            self.unwatched_since = now
        if now - self.unwatched_since >= self.grace_s:
            self.cancel("interrupted")

    # --- writes ---------------------------------------------------------------------------------
    def _append(self, envelope: dict) -> None:
        self.seq += 1
        try:
            tokenlog.append(self.redis, self.message_id, self.seq, envelope)
        except ResponseError:
            # The reaper ended this answer (we were silent too long): stop generating it.
            log.warning("answer %s was ended by the reaper; cancelling", self.message_id)
            self.cancel("interrupted")

    def _checkpoint(self) -> None:
        text = "".join(self.parts)
        if len(text) != self.saved_chars:
            self.saved_chars = len(text)
            services.generation_checkpoint(message_id=self.message_id, content=text)
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
    pubsub = tokenlog.sync_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(tokenlog.control_channel())
    for item in pubsub.listen():
        notice = json.loads(item["data"])
        generation = _live.get(notice["message"])
        if generation is not None:
            generation.events.put(notice["op"])
