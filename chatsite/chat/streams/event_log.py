"""An answer's event log: its numbered envelopes, as its followers read them
(docs/ARCHITECTURE.md, "How a token travels").

One interface, two homes, and the lifecycle (lifecycle.py) is their only writer:
- `MemoryLog`, in this web process (local and lorax modes);
- `RedisLog`, the answer's Redis stream (celery mode, tokenlog.py), written by one writer at a
  time: the worker, then perhaps the reaper, fenced by the answer's owner key. While Redis
  cannot be reached, envelopes wait in it and are retried with backoff.

Numbering: the start is 0 and each envelope is one more; `append` gives the number it used, so
the numbering is the log's alone. `text` is the answer's text as a follower of the log can have
read it, so a save never keeps text nobody could see.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from django.conf import settings
from redis.exceptions import RedisError

from chatsite.chat.streams import tokenlog

log = logging.getLogger(__name__)

# Retrying Redis: the first retry soon (a blip), then less and less often.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0


class EventLog(Protocol):
    seq: int  # the number of the last envelope appended; -1 when there is none

    @property
    def text(self) -> str: ...

    def append(self, envelope: dict) -> int: ...

    def read(self, after: int) -> list[dict]: ...

    def close(self, ttl: float) -> None: ...


def _token_text(envelope: dict) -> str | None:
    return envelope["payload"]["text"] if envelope["type"] == "inference.token" else None


class MemoryLog:
    """The log of an answer generated in this process; followers wait on the event loop.
    `close(ttl)`: no more envelopes; after `ttl` s, `on_expiry` (the run is forgotten)."""

    def __init__(self, on_expiry: Callable[[], None] | None = None):
        self.entries: list[dict] = []
        self.closed = False
        self._parts: list[str] = []
        self._changed = asyncio.Event()
        self._on_expiry = on_expiry

    @property
    def seq(self) -> int:
        return len(self.entries) - 1

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def append(self, envelope: dict) -> int:
        self.entries.append(envelope)
        if (text := _token_text(envelope)) is not None:
            self._parts.append(text)
        self._wake()
        return self.seq

    def read(self, after: int) -> list[dict]:
        return self.entries[after + 1:]

    async def changed(self) -> None:
        """Until the next append or the close."""
        await self._changed.wait()

    def close(self, ttl: float) -> None:
        self.closed = True
        self._wake()
        if self._on_expiry is not None:
            asyncio.get_running_loop().call_later(ttl, self._on_expiry)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class RedisLog:
    """An answer's Redis stream as `writer` appends to it (`tokenlog.append_as`: only while the
    answer is the writer's). `append` queues; `flush` sends what waits unless a retry is not
    due yet. `lost()` once Redis has been away WORKER_LOST_AFTER_S, `fenced` once someone else
    (the reaper) has taken the answer over. `seq`: the last number given (the stream's last
    entry is `published_seq`); `earlier`: the text the log already holds."""

    def __init__(self, redis, message_id: int, *, writer: str, seq: int, earlier: str = ""):
        self.redis = redis
        self.message_id = message_id
        self.writer = writer
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

    def append(self, envelope: dict) -> int:
        self.seq += 1
        self.pending.append((self.seq, envelope))
        return self.seq

    def read(self, after: int) -> list[dict]:
        entries = self.redis.xrange(tokenlog.stream_key(self.message_id), min=tokenlog.entry_id(after + 1))
        return [tokenlog.decode(fields) for _, fields in entries]

    def close(self, ttl: float) -> None:
        try:
            tokenlog.close(self.redis, self.message_id, ttl)
        except RedisError:
            log.warning("answer %s: its log was not set to expire", self.message_id, exc_info=True)

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
                mine = tokenlog.append_as(self.redis, self.writer, self.message_id, seq, envelope)
            except RedisError:
                self._failed(now)
                return False
            if not mine:
                self.fenced = True
                self.pending.clear()
                return False
            self.pending.popleft()
            self.published_seq = seq
            if (text := _token_text(envelope)) is not None:
                self.published.append(text)
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
            self.close(settings.TOKEN_LOG_TTL_S)

    def wait_for_redis(self) -> bool:
        """Until Redis answers again: True if the answer is still ours then, False if someone
        else took it over (or TOKEN_LOG_TTL_S passed)."""
        deadline = time.monotonic() + settings.TOKEN_LOG_TTL_S
        while time.monotonic() < deadline:
            try:
                owner = self.redis.get(tokenlog.owner_key(self.message_id))
            except RedisError:
                self._failed(time.monotonic())
                time.sleep(max(0.0, self.retry_at - time.monotonic()))
                continue
            self.fenced = owner not in (None, self.writer.encode())
            return not self.fenced
        return False
