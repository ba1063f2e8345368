"""Live generations in this web process (docs/ARCHITECTURE.md, "How a token travels").

A `GenerationRun` owns one assistant message while it is generated: it feeds the engine's
events into an ordered envelope log, lets any number of subscribers follow that log, saves the
text (checkpoints, then the final state) and applies the disconnect policy. The engine calls
back from its own thread; everything else here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from chatsite.chat.conversations import services
from chatsite.chat.models import Message
from chatsite.chat.ops import metrics
from chatsite.chat.streams import checkpoints, envelopes
from chatsite.chat.workers.engine_holder import loaded_engine, process_engine
from chatsite.errors import ChatError
from inference.types import Engine, Event, Failed, Finished, Started, TextDelta

log = logging.getLogger(__name__)

# A finished run's log stays readable this long, so a client that reconnects right after the
# end still replays it exactly; later the saved message stands in for it.
KEEP_FINISHED_S = 60.0
_runs: dict[int, "GenerationRun"] = {}


def run_of(message_id: int):
    """The live (or recently ended) generation of an answer, to follow or stop.

    In celery mode every answer has a handle: its token log says whether it still runs.
    """
    if settings.INFERENCE_MODE == "celery":
        from chatsite.chat.workers.remote_run import RemoteRun

        return RemoteRun(message_id)
    return _runs.get(message_id)


def _forget(run: "GenerationRun") -> None:
    # A continued answer has a newer run under the same id; leave that one alone.
    if _runs.get(run.message_id) is run:
        del _runs[run.message_id]


async def generation_run(exchange: services.Exchange):
    """Start generating the exchange's answer: in this process (local mode, or a LoRAX stream
    driven from here in lorax mode), or on a GPU worker (celery mode)."""
    metrics.count_request()
    if settings.INFERENCE_MODE == "celery":
        from chatsite.chat.workers.remote_run import remote_run

        return await remote_run(exchange)
    run = GenerationRun(exchange)
    _runs[run.message_id] = run
    try:
        # Loading blocks, so it happens off the loop; once loaded, no thread hop per request.
        engine = loaded_engine() or await asyncio.to_thread(process_engine)
    except ChatError as err:
        run.refuse(err)
    else:
        run.start(engine)
    return run


class GenerationRun:
    def __init__(self, exchange: services.Exchange):
        answer = exchange.assistant_message
        self.engine: Engine | None = None
        self.request = exchange.request
        self.message_id = answer.pk
        self.owner_id = exchange.conversation.owner_id
        self.log: list[dict] = [
            envelopes.start(
                message=answer.pk,
                conversation=exchange.conversation.pk,
                adapter=answer.adapter.slug if answer.adapter else None,
                parent=answer.parent_id,
            )
        ]
        self.done = False
        self._parts: list[str] = []
        # A continued answer replays its earlier text as the first token, so that a follower
        # who starts from nothing still sees the whole message.
        self._index_offset = 0
        if answer.content:
            self._parts.append(answer.content)
            self.log.append(envelopes.token(message=answer.pk, text=answer.content, index=0))
            self._index_offset = 1
        self._saved_chars = -1
        self._failed: Failed | None = None
        self._cancel_cause: str | None = None
        self._subscribers = 0
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task] = set()
        self._grace: asyncio.TimerHandle | None = None
        self._bytes = 0
        self._started_at = self._loop.time()
        self._metrics = metrics.GenerationMetrics()

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def start(self, engine: Engine) -> None:
        self.engine = engine
        checkpoints.watch(self)
        engine.submit(self.request, self._from_engine_thread)

    def refuse(self, err: ChatError) -> None:
        """End before any engine work (the engine could not be had), as an engine error would."""
        self._on_event(Failed(err.code, err.message))
        self._on_event(Finished("error", 0, 0, None, 0.0))

    # --- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        """The user pressed Stop: end now, keep the text, status `stopped`."""
        self._cancel(Message.Status.STOPPED)

    def subscribe(self, after: int = -1) -> "Subscription":
        self._subscribers += 1
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        return Subscription(self, after)

    def _unsubscribe(self) -> None:
        self._subscribers -= 1
        if self._subscribers or self.done:
            return
        grace = settings.STREAM_RESUME_GRACE_S
        if grace <= 0:
            self._cancel(Message.Status.INTERRUPTED)
        else:
            self._grace = self._loop.call_later(grace, self._cancel, Message.Status.INTERRUPTED)
            self._spawn(self._checkpoint())  # the text so far is safe while we wait

    def _cancel(self, cause: str) -> None:
        if self.done or self._cancel_cause or self.engine is None:
            return
        self._cancel_cause = cause
        self.engine.cancel(self.request.id)

    # --- engine events ------------------------------------------------------------------------
    def _from_engine_thread(self, event: Event) -> None:
        self._loop.call_soon_threadsafe(self._on_event, event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self._parts.append(event.text)
            self._bytes += len(event.text.encode())
            self._metrics.token()
            index = event.index + self._index_offset
            self._publish(
                envelopes.token(
                    message=self.message_id, text=event.text, index=index, tokens=event.tokens
                )
            )
            self._enforce_caps()
        elif isinstance(event, Failed):
            self._failed = event
            self._metrics.error(event.code)
            self._publish(envelopes.error(ChatError(event.code, event.message), message=self.message_id))
        elif isinstance(event, Finished):
            self._metrics.end()
            self._spawn(self._finish(event))
        elif not isinstance(event, Started):
            log.warning("unexpected engine event %r", event)

    async def _finish(self, finished: Finished) -> None:
        checkpoints.forget(self)
        await database_sync_to_async(services.generation_finish)(
            message_id=self.message_id,
            content=self.text,
            finished=finished,
            cancel_cause=self._cancel_cause,
            error_code=self._failed.code if self._failed else "",
            error_text=self._failed.message if self._failed else "",
            end_event_id=len(self.log),  # where the end is published, just below
        )
        self._loop.call_later(KEEP_FINISHED_S, _forget, self)
        self.done = True
        reason = services.end_reason(finished, self._cancel_cause)
        self._publish(envelopes.end_of(finished, message=self.message_id, reason=reason))

    # --- persistence --------------------------------------------------------------------------
    def _enforce_caps(self) -> None:
        cause = services.cap_reached(
            text_bytes=self._bytes, elapsed_s=self._loop.time() - self._started_at
        )
        if cause:
            self._cancel(cause)

    # Called by `checkpoints`, every `checkpoints.EVERY_S` while the run is live.
    def tick(self) -> None:
        self._enforce_caps()

    def checkpoint_text(self) -> str | None:
        text = self.text
        if self.done or len(text) == self._saved_chars:
            return None
        self._saved_chars = len(text)
        return text

    async def _checkpoint(self) -> None:
        # Ignored by the database once the final state is saved, so order cannot matter.
        await checkpoints.save_now([self])

    # --- plumbing -----------------------------------------------------------------------------
    def _publish(self, envelope: dict) -> None:
        self.log.append(envelope)
        self._changed.set()
        self._changed = asyncio.Event()

    def _spawn(self, coro) -> None:
        # A fresh context: a run outlives the request that started or left it, and must not
        # use that request's thread executor for its database writes once the request is gone.
        task = self._loop.create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Subscription:
    """One follower of a run's envelope log, from position `after + 1` to the end."""

    def __init__(self, run: GenerationRun, after: int):
        self._run = run
        self._next = after + 1
        self._closed = False

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        run = self._run
        while self._next >= len(run.log):
            if run.done or self._closed:
                raise StopAsyncIteration
            await run._changed.wait()
        envelope = run.log[self._next]
        self._next += 1
        return envelope

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._run._unsubscribe()
