"""Generations for the HTTP APIs (docs/ARCHITECTURE.md, "HTTP APIs").

The one place where the native, OpenAI- and LoRAX-compatible endpoints start, follow and stop
generations. It only uses the run's public entry points (`generation_run`, `run_of`,
`subscribe`/`close`, `stop`) and streams/follow.py's `follow_or_replay`, so it works the same
whichever backend runs the engine.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator
from contextlib import aclosing

from asgiref.sync import async_to_sync, sync_to_async
from django.db import close_old_connections, connection
from django.http import HttpResponse, StreamingHttpResponse

from chatsite.accounts import key_revocation
from chatsite.chat.conversations import services
from chatsite.chat.models import Message
from chatsite.chat.streams import envelopes
from chatsite.chat.streams.follow import Replay, follow_or_replay
from chatsite.chat.workers.engine_holder import loaded_engine
from chatsite.chat.workers.local_run import GenerationRun, generation_run, run_of
from chatsite.errors import ChatError

# Proxies and browsers drop a quiet connection after 30-60 s; a comment line keeps it open.
KEEPALIVE_S = 10.0
# How long a client refused for too many generations, or by a busy engine, should wait.
RETRY_AFTER_S = 5
KEY_REVOKED = ChatError("key_revoked", key_revocation.REVOKED_MESSAGE)
# How long an EventSource waits before reconnecting (SSE `retry:`); browsers guess 3 s.
RECONNECT_MS = 2000


def _refuse_when_engine_full() -> None:
    # Before anything is stored, so every API answers 429 with Retry-After (a stream too, as
    # its headers are not sent yet). Only an engine in this process can be asked (local mode);
    # elsewhere the engine's own refusal arrives as the answer's error.
    is_full = getattr(loaded_engine(), "is_full", None)
    if is_full is not None and is_full():
        from inference.engine import OVERLOADED

        raise ChatError("overloaded", OVERLOADED)


async def start(starter=services.exchange_start, **fields):
    """Record the exchange and start generating it (from async views): (exchange, run).

    Shielded: a client that leaves while its answer is being recorded or started (the engine
    may still be loading) must not cancel half of it, or the answer would stay `pending` for
    good. The start finishes; the run, followed by nobody, then ends as if its client had just
    left (the grace period, then `interrupted`)."""
    [started] = await start_all(lambda **given: [starter(**given)], **fields)
    return started


async def start_all(starter, **fields) -> list[tuple[services.Exchange, GenerationRun]]:
    """`start` for a starter that records several exchanges (OpenAI's `n`): [(exchange,
    run)], started together, so the engine decodes them in one batch."""
    task = asyncio.get_running_loop().create_task(_start(starter, fields))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_abandoned)
        raise


async def _start(starter, fields: dict):
    # asgiref's sync_to_async, as Django advises inside a request (the request's end closes its
    # connection); channels' database_sync_to_async is for work outside requests.
    _refuse_when_engine_full()
    exchanges = await sync_to_async(starter)(**fields)
    return [(exchange, await _run_detached(exchange)) for exchange in exchanges]


def _abandoned(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is None:
        for _, run in task.result():
            run.subscribe().close()


def start_from_sync_view(**fields) -> services.Exchange:
    """The same for a sync (DRF) view: the run must live on the server's event loop, which
    `async_to_sync` reaches from the thread Django runs sync views in."""
    _refuse_when_engine_full()
    exchange = services.exchange_start(**fields)
    _give_connection_back()  # saved; starting the run can wait on a busy event loop
    async_to_sync(_run_detached)(exchange)
    return exchange


def start_compare_from_sync_view(**fields) -> list[services.Exchange]:
    """One message answered by several adapters at once (`services.exchange_compare`): the runs
    start together, so the engine decodes them in one batch."""
    _refuse_when_engine_full()
    exchanges = services.exchange_compare(**fields)  # counts every answer against the cap
    _give_connection_back()
    for exchange in exchanges:
        async_to_sync(_run_detached)(exchange)
    return exchanges


async def _run_detached(exchange) -> GenerationRun:
    """Start the run outside the request's context. The run outlives the request, and asgiref
    keeps the request's thread-sensitive executor in that context: it is shut down when the
    request ends, and the run's later database writes would fail on it."""
    task = asyncio.get_running_loop().create_task(
        generation_run(exchange), context=contextvars.Context()
    )
    return await task


def stop_from_sync_view(message_id: int) -> None:
    async_to_sync(_stop)(message_id)


def conversation_delete_from_sync_view(*, user, conversation_id: int) -> None:
    """Delete a conversation and stop the answers it was still generating: a deleted answer
    must not generate on, unseen, outside the user's live-answer cap."""
    for message_id in services.conversation_delete(user=user, conversation_id=conversation_id):
        stop_from_sync_view(message_id)


async def _stop(message_id: int) -> None:
    run = run_of(message_id)
    if run is not None:
        run.stop()


async def follow(
    message, after: int = -1, *, key_id: int | None = None, started: bool = False
) -> AsyncIterator[tuple[int, dict | None]]:
    """(seq, envelope) for every event after `after`, then the live tail; (−1, None) stands
    for a keep-alive. Leaving (the client went away) closes the subscription, so the run's
    disconnect policy applies. Without a live log, the saved message is replayed
    (streams/follow.py)."""
    subscription = await follow_or_replay(message, after)
    async with aclosing(_followed(subscription, message.pk, after, key_id, started)) as events:
        async for item in events:
            yield item


async def _followed(subscription, message_id: int, after: int, key_id: int | None, started: bool):
    """`subscription`'s events, with keep-alives. `key_id`: the API key the stream was opened
    with. Once it is revoked the stream stops the answer if it `started` it, sends a
    `key_revoked` error (at the last position: it is no event of the answer's log) and ends."""
    position = after
    try:
        async with key_revocation.watching(key_id) as watch:
            while not watch.revoked:
                try:
                    # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that
                    # arrives as the next event does, and a client that left would then be
                    # streamed to until the end instead of interrupting the run. The key's
                    # watch ends this wait early when the key is revoked.
                    async with asyncio.timeout(KEEPALIVE_S) as watch.wait:
                        position, envelope = await subscription.__anext__()
                except TimeoutError:
                    if not watch.revoked:
                        yield -1, None
                    continue
                except StopAsyncIteration:
                    return
                yield position, envelope
            if started:
                await _stop(message_id)
            yield position, envelopes.error(KEY_REVOKED, message=message_id)
    finally:
        subscription.close()


async def api_answer_events(exchange, key_id: int) -> AsyncIterator[dict | None]:
    """The envelopes of the answer an OpenAI or LoRAX call started, as `follow` gives them with
    that call's key (None: time for a keep-alive). Notices (a failover) are left out: those
    protocols have no event for them, and the tokens simply go on."""
    events = follow(exchange.assistant_message, key_id=key_id, started=True)
    async with aclosing(events):
        async for _, envelope in events:
            if envelope is None or envelope["type"] != "inference.notice":
                yield envelope


async def until_end(run: GenerationRun, *, key_id: int | None = None) -> list[dict]:
    """Every envelope of a run, for answers that are not streamed; with `key_id`, as `follow`
    when that key is revoked (the run is stopped, the last envelope is the `key_revoked` error)."""
    events = _followed(run.subscribe(), run.message_id, -1, key_id, True)
    async with aclosing(events):
        return [envelope async for _, envelope in events if envelope is not None]


async def native_sse_response(message, after: int = -1, key_id: int | None = None):
    """The native SSE answer (docs/PROTOCOL.md §1) to a client that has every event up to `after`.

    An EventSource reconnects whenever a stream ends, so a finished answer must end it: 204
    when the client already has the end (EventSource stops on 204). A live log serves the
    events after `after`; once it is gone, the saved message does, with the live ids. A client
    that holds part of the text of an answer whose log is gone cannot be given the rest
    exactly (the saved text is one token): 410, with where to read the whole answer."""
    if _has_end(message, after):
        return HttpResponse(status=204)
    subscription = await follow_or_replay(message, after)
    if isinstance(subscription, Replay):
        if not subscription.events:
            return HttpResponse(status=204)
        if subscription.holds_part(after):
            raise ChatError(
                "stream_expired",
                f"The events after {after} are no longer kept; the answer has ended, "
                f"read it whole at /api/v1/messages/{message.pk}/.",
            )
    return sse_response(_framed(_followed(subscription, message.pk, after, key_id, False)))


def _has_end(message, after: int) -> bool:
    ended = message.status not in Message.LIVE_STATUSES and message.end_event_id is not None
    return ended and after >= message.end_event_id


def native_sse(message, after: int = -1, key_id: int | None = None) -> AsyncIterator[bytes]:
    """docs/PROTOCOL.md §1 SSE framing of `follow`."""
    return _framed(follow(message, after, key_id=key_id))


async def _framed(events) -> AsyncIterator[bytes]:
    """`retry:` first, then each (position, envelope) as one frame; closing this closes
    `events` (the subscription behind them)."""
    async with aclosing(events):
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        async for position, envelope in events:
            if envelope is None:
                yield b": keep-alive\n\n"
            else:
                data = json.dumps(envelope, separators=(",", ":"))
                yield f"id: {position}\nevent: {envelope['type']}\ndata: {data}\n\n".encode()


class ClosingStream:
    """Frames whose generator is surely closed when the response ends.

    When a client disconnects while Django is sending a chunk, Django stops iterating but does
    not `aclose()` the generator behind its wrappers, so the `finally` that closes the
    subscription (and applies the disconnect policy) would wait for the garbage collector.
    Django does call the content's `close()` (from a worker thread) at the end of the response.
    """

    def __init__(self, frames: AsyncIterator[bytes]):
        self._frames = frames
        self._loop: asyncio.AbstractEventLoop | None = None

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            # A stream lasts as long as its answer. Django gives the request's database
            # connection back when the response ends; give it back now, or every live stream
            # holds one and a few hundred exhaust PostgreSQL (or its pool).
            await sync_to_async(_give_connection_back)()
        return await self._frames.__anext__()

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._frames.aclose(), self._loop)


def _give_connection_back() -> None:
    if not connection.in_atomic_block:  # a test's transaction, or a caller's: leave it be
        close_old_connections()


def sse_response(frames) -> StreamingHttpResponse:
    """An SSE answer that no proxy buffers or caches."""
    response = StreamingHttpResponse(ClosingStream(frames), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def sse_data(obj: dict) -> bytes:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


def end_of(events: list[dict]) -> dict:
    return next(e["payload"] for e in reversed(events) if e["type"] == "inference.end")


def error_of(events: list[dict]) -> ChatError | None:
    for envelope in events:
        if envelope["type"] == "inference.error":
            return ChatError(envelope["payload"]["code"], envelope["payload"]["message"])
    return None
