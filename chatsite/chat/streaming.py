"""Generations for the HTTP APIs (docs/ARCHITECTURE.md, "HTTP APIs").

The one place where the native, OpenAI- and LoRAX-compatible endpoints start, follow and stop
generations. It only uses the run's public entry points (`generation_run`, `run_of`,
`subscribe`/`close`, `stop`, `envelopes.from_saved`), so it works the same whichever backend
runs the engine.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator
from contextlib import aclosing

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.http import StreamingHttpResponse

from chatsite.chat import envelopes, selectors, services
from chatsite.chat.errors import ChatError
from chatsite.chat.generation import GenerationRun, generation_run, run_of

# Proxies and browsers drop a quiet connection after 30-60 s; a comment line keeps it open.
KEEPALIVE_S = 10.0
# How long a client refused for too many generations should wait before trying again.
RETRY_AFTER_S = 5


def exchange_start_limited(starter=services.exchange_start, **fields) -> services.Exchange:
    """Record an exchange with `starter` (a service), refused first when the user already has
    too many answers being generated."""
    _check_room(fields["user"], 1)
    return starter(**fields)


def _check_room(user, wanted: int) -> None:
    if selectors.live_generations_count(user) + wanted > settings.API_MAX_CONCURRENT:
        raise ChatError(
            "too_many_streams",
            f"You may have {settings.API_MAX_CONCURRENT} answers being generated at once; "
            "wait for one to finish or stop it.",
        )


async def start(starter=services.exchange_start, **fields):
    """Record the exchange and start generating it (from async views): (exchange, run).

    Shielded: a client that leaves while its answer is being recorded or started (the engine
    may still be loading) must not cancel half of it, or the answer would stay `pending` for
    good. The start finishes; the run, followed by nobody, then ends as if its client had just
    left (the grace period, then `interrupted`)."""
    task = asyncio.get_running_loop().create_task(_start(starter, fields))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_abandoned)
        raise


async def _start(starter, fields: dict):
    # asgiref's sync_to_async, as Django advises inside a request (the request's end closes its
    # connection); channels' database_sync_to_async is for work outside requests.
    exchange = await sync_to_async(exchange_start_limited)(starter, **fields)
    return exchange, await _run_detached(exchange)


def _abandoned(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is None:
        _, run = task.result()
        run.subscribe().close()


def start_from_sync_view(**fields) -> services.Exchange:
    """The same for a sync (DRF) view: the run must live on the server's event loop, which
    `async_to_sync` reaches from the thread Django runs sync views in."""
    exchange = exchange_start_limited(**fields)
    _give_connection_back()  # saved; starting the run can wait on a busy event loop
    async_to_sync(_run_detached)(exchange)
    return exchange


def start_compare_from_sync_view(**fields) -> list[services.Exchange]:
    """One message answered by several adapters at once (`services.exchange_compare`): the runs
    start together, so the engine decodes them in one batch."""
    _check_room(fields["user"], len(fields["adapter_slugs"]))
    exchanges = services.exchange_compare(**fields)
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


async def _stop(message_id: int) -> None:
    run = run_of(message_id)
    if run is not None:
        run.stop()


async def follow(message, after: int = -1) -> AsyncIterator[tuple[int, dict | None]]:
    """(position, envelope) for every event after `after`, then the live tail; (−1, None)
    stands for a keep-alive. Leaving (the client went away) closes the subscription, so the
    run's disconnect policy applies. Without a live log, the saved message is replayed whole."""
    run = run_of(message.pk)
    if run is None:
        for position, envelope in enumerate(envelopes.from_saved(message)):
            yield position, envelope
        return
    subscription = run.subscribe(after)
    position = after
    try:
        while True:
            try:
                # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that
                # arrives as the next event does, and a client that left would then be
                # streamed to until the end instead of interrupting the run.
                async with asyncio.timeout(KEEPALIVE_S):
                    envelope = await subscription.__anext__()
            except TimeoutError:
                yield -1, None
                continue
            except StopAsyncIteration:
                return
            position += 1
            yield position, envelope
    finally:
        subscription.close()


async def until_end(run: GenerationRun) -> list[dict]:
    """Every envelope of a run, for answers that are not streamed."""
    subscription = run.subscribe()
    try:
        return [envelope async for envelope in subscription]
    finally:
        subscription.close()


async def native_sse(message, after: int = -1) -> AsyncIterator[bytes]:
    """docs/PROTOCOL.md §1 SSE framing of `follow`."""
    async with aclosing(follow(message, after)) as events:
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


def text_of(events: list[dict]) -> str:
    return "".join(e["payload"]["text"] for e in events if e["type"] == "inference.token")


def end_of(events: list[dict]) -> dict:
    return next(e["payload"] for e in reversed(events) if e["type"] == "inference.end")


def error_of(events: list[dict]) -> ChatError | None:
    for envelope in events:
        if envelope["type"] == "inference.error":
            return ChatError(envelope["payload"]["code"], envelope["payload"]["message"])
    return None
