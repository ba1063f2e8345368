"""Live generations in this web process (docs/ARCHITECTURE.md, "How a token travels").

A `GenerationRun` owns one assistant message while it is generated in this process: it hands
the engine's events to the answer's lifecycle (streams/lifecycle.py), which writes them to an
in-memory event log, lets any number of subscribers follow that log, checkpoints the text and
applies the disconnect policy. The engine calls back from its own thread; everything else here
runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars

from channels.db import database_sync_to_async
from django.conf import settings

from chatsite.chat.conversations import services
from chatsite.chat.ops import metrics
from chatsite.chat.streams import checkpoints, lifecycle
from chatsite.chat.streams.event_log import MemoryLog
from chatsite.chat.workers.engine_holder import loaded_engine, process_engine
from chatsite.errors import ChatError
from inference.types import Engine, Event, Finished

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
        self.log = MemoryLog(on_expiry=lambda: _forget(self))
        for envelope in lifecycle.opening(answer):
            self.log.append(envelope)
        # A continued answer's earlier text is token 0: new tokens come after it.
        self.life = lifecycle.AnswerLifecycle(answer.pk, self.log, index_offset=self.log.seq)
        self._saved_chars = -1
        self._subscribers = 0
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task] = set()
        self._grace: asyncio.TimerHandle | None = None

    @property
    def done(self) -> bool:
        return self.log.closed

    @property
    def text(self) -> str:
        return self.life.text

    def start(self, engine: Engine) -> None:
        self.engine = engine
        self.life.attach(engine, self.request.id)
        checkpoints.watch(self)
        engine.submit(self.request, self._from_engine_thread)

    def refuse(self, err: ChatError) -> None:
        """End before any engine work (the engine could not be had)."""
        self.life.refuse(err)
        self._spawn(self._finish())

    async def has_log(self) -> bool:
        return True  # in memory until the run is forgotten

    # --- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        """The user pressed Stop: end now, keep the text, status `stopped`."""
        self.life.cancel("stopped")

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
            self.life.cancel("interrupted")
        else:
            self._grace = self._loop.call_later(grace, self.life.cancel, "interrupted")
            self._spawn(self._checkpoint())  # the text so far is safe while we wait

    # --- engine events ------------------------------------------------------------------------
    def _from_engine_thread(self, event: Event) -> None:
        self._loop.call_soon_threadsafe(self._on_event, event)

    def _on_event(self, event: Event) -> None:
        self.life.on_event(event)
        if isinstance(event, Finished):
            self._spawn(self._finish())

    async def _finish(self) -> None:
        checkpoints.forget(self)
        await self.life.finish_async(database_sync_to_async(services.generation_finish))
        self.log.close(KEEP_FINISHED_S)

    # --- persistence --------------------------------------------------------------------------
    # Called by `checkpoints`, every `checkpoints.EVERY_S` while the run is live.
    def tick(self) -> None:
        self.life.check_caps()

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
    def _spawn(self, coro) -> None:
        # A fresh context: a run outlives the request that started or left it, and must not
        # use that request's thread executor for its database writes once the request is gone.
        task = self._loop.create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Subscription:
    """One follower of a run's event log: (seq, envelope) from `after + 1` to the end."""

    def __init__(self, run: GenerationRun, after: int):
        self._run = run
        self._next = after + 1
        self._ready: list[dict] = []
        self._closed = False

    def __aiter__(self):
        return self

    async def __anext__(self) -> tuple[int, dict]:
        log = self._run.log
        while not self._ready:
            if self._closed:
                raise StopAsyncIteration
            self._ready = log.read(self._next - 1)
            if not self._ready:
                if log.closed:
                    raise StopAsyncIteration
                await log.changed()
        seq = self._next
        self._next += 1
        return seq, self._ready.pop(0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._run._unsubscribe()
