"""The web side of celery mode: start a generation on a worker, follow it through the token log.

The log's opening (streams/lifecycle.py) is written here, when the task is queued; the worker
appends the rest.

Same shape as a local `GenerationRun` (subscribe, stop), so transports do not care where the
engine runs. See docs/ARCHITECTURE.md, "Celery mode".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid

from django.conf import settings
from redis.exceptions import RedisError

from chatsite.chat.conversations import services
from chatsite.chat.streams import lifecycle, tokenlog
from chatsite.chat.streams.follow import Replay
from chatsite.chat.workers import failover, task_routing

log = logging.getLogger(__name__)

READ_BLOCK_MS = 2000  # under the client's 5 s socket timeout
READ_COUNT = 256  # bounded reads: a slow client never makes this process buffer much


async def remote_run(exchange: services.Exchange) -> "RemoteRun":
    from asgiref.sync import sync_to_async

    from chatsite.chat.workers.tasks import generate

    answer = exchange.assistant_message
    adapter = answer.adapter.slug if answer.adapter else None
    run = RemoteRun(answer.pk)
    redis = tokenlog.async_client()
    # The starting client counts as a watcher until its subscription takes over, so a worker
    # that starts first does not see an unwatched answer and cancel it.
    await run.lease(run.launch_watcher)
    chosen = await task_routing.route(redis, adapter)
    pipe = redis.pipeline()
    tokenlog.open_log(pipe, answer.pk, lifecycle.opening(answer))  # the worker appends the rest
    task_routing.record(pipe, answer.pk, chosen)
    params = dataclasses.asdict(exchange.request.params)
    failover.remember_task(
        pipe, answer.pk, params=params, kind=exchange.kind,
        grace_s=settings.STREAM_RESUME_GRACE_S, earlier=bool(answer.content),
    )
    await pipe.execute()
    await sync_to_async(generate.apply_async)(
        (answer.pk, params, exchange.kind, settings.STREAM_RESUME_GRACE_S),
        {"routed_to": chosen.worker},
        queue=chosen.queue,
    )
    return run


class RemoteRun:
    def __init__(self, message_id: int):
        self.message_id = message_id
        self.launch_watcher: str | None = f"launch-{uuid.uuid4().hex}"

    async def has_log(self) -> bool:
        """False once the token log has expired: the saved message stands in for it."""
        return bool(await tokenlog.async_client().exists(tokenlog.stream_key(self.message_id)))

    def subscribe(self, after: int = -1) -> "RemoteSubscription":
        launch, self.launch_watcher = self.launch_watcher, None
        return RemoteSubscription(self, after, replaces=launch)

    def stop(self) -> None:
        asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        redis = tokenlog.async_client()
        await redis.set(tokenlog.stop_key(self.message_id), "1", ex=3600)
        await redis.publish(tokenlog.control_channel(), tokenlog.control_notice(self.message_id, "stop"))

    async def lease(self, watcher: str) -> None:
        await tokenlog.async_client().zadd(
            tokenlog.watchers_key(self.message_id), {watcher: time.time() + tokenlog.WATCH_LEASE_S}
        )


class RemoteSubscription:
    """Follows one generation's token log from sequence `after + 1`, as (seq, envelope); renews
    a watcher lease while it lives. When the log is gone, the saved message stands in for it
    (streams/follow.py)."""

    def __init__(self, run: RemoteRun, after: int, replaces: str | None = None):
        self._run = run
        self._next = after + 1
        self._watcher = f"watch-{uuid.uuid4().hex}"
        self._replaces = replaces
        self._buffer: list[tuple[int, dict]] = []
        self._replay: Replay | None = None
        self._ended = False
        self._renewer: asyncio.Task | None = None
        self._closed = False

    def __aiter__(self):
        return self

    async def __anext__(self) -> tuple[int, dict]:
        if self._closed:
            raise StopAsyncIteration
        if self._renewer is None:
            await self._join()
        if self._replay is not None:
            return await self._replay.__anext__()
        while not self._buffer:
            if self._ended or self._closed:
                raise StopAsyncIteration
            if not await self._read():  # the log is gone: the saved answer stands in
                self._ended = True
                self._replay = await Replay.of(self._run.message_id, self._next - 1)
                return await self._replay.__anext__()
        seq, envelope = self._buffer.pop(0)
        self._next = seq + 1
        if envelope["type"] == "inference.end":
            self._ended = True
        return seq, envelope

    async def _join(self) -> None:
        await self._run.lease(self._watcher)
        if self._replaces:
            await tokenlog.async_client().zrem(tokenlog.watchers_key(self._run.message_id), self._replaces)
        self._renewer = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(tokenlog.WATCH_LEASE_S / 3)
            try:
                await self._run.lease(self._watcher)
            except RedisError:  # one missed renewal is fine: the lease outlives two of them
                log.warning("could not renew the watch of answer %s", self._run.message_id, exc_info=True)

    async def _read(self) -> bool:
        """Buffer what the log holds after what was given; False when there is no log."""
        redis = tokenlog.async_client()
        key = tokenlog.stream_key(self._run.message_id)
        start = tokenlog.entry_id(self._next - 1) if self._next else "0-0"
        reply = await redis.xread({key: start}, count=READ_COUNT, block=READ_BLOCK_MS)
        if reply:
            for entry_id, fields in reply[0][1]:
                seq = tokenlog.seq_of(entry_id)
                if seq >= self._next + len(self._buffer):
                    self._buffer.append((seq, tokenlog.decode(fields)))
            return True
        return bool(await redis.exists(key))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        asyncio.get_running_loop().create_task(self._leave())

    async def _leave(self) -> None:
        if self._renewer is not None:
            # A renewal already on the wire would put the lease back after our ZREM.
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await self._renewer
        redis = tokenlog.async_client()
        message_id = self._run.message_id
        await redis.zrem(tokenlog.watchers_key(message_id), self._watcher)
        if not self._ended:
            await redis.publish(tokenlog.control_channel(), tokenlog.control_notice(message_id, "detached"))
