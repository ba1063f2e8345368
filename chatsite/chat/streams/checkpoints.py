"""Checkpoints of the live answers of this web process (local and lorax modes).

Every `EVERY_S` the text so far of every live run whose text grew is saved, all in one
transaction on one database thread, with this process's heartbeat (processes.py). One write per
run and tick cost a thread hop and a commit each: 400 a second at 200 live answers, which on
SQLite queued every other database call of the process behind them (docs/BENCHMARKS.md,
"Streaming under load"). A kill loses at most the text of the last period. Every `SWEEP_EVERY_S`
the same loop ends the answers of processes that are provably gone.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from chatsite.chat.conversations import services
from chatsite.chat.workers import processes

log = logging.getLogger(__name__)

EVERY_S = 0.5
SWEEP_EVERY_S = 5.0


class Checkpointed(Protocol):
    message_id: int

    def checkpoint_text(self) -> str | None:
        """The text to save now, or None when nothing changed since the last save."""

    def tick(self) -> None:
        """Called once per period (the stream caps that depend on time)."""


class _Checkpointer:
    """The live runs of one event loop, and the task that checkpoints them."""

    def __init__(self):
        self.live: set[Checkpointed] = set()
        self.task: asyncio.Task | None = None

    async def loop(self) -> None:
        swept_at = 0.0
        while self.live:
            await save_now(list(self.live), beat=True)
            now = asyncio.get_running_loop().time()
            if now - swept_at >= SWEEP_EVERY_S:
                swept_at = now
                await sweep_orphans()
            await asyncio.sleep(EVERY_S)


# By event loop: a run belongs to the loop it streams on (one per server process; tests make many).
_checkpointers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _here() -> _Checkpointer:
    loop = asyncio.get_running_loop()
    checkpointer = _checkpointers.get(loop)
    if checkpointer is None:
        checkpointer = _checkpointers[loop] = _Checkpointer()
    return checkpointer


def watch(run: Checkpointed) -> None:
    """Checkpoint `run` from now on, until `forget`; starts the loop when it is not running."""
    checkpointer = _here()
    checkpointer.live.add(run)
    if checkpointer.task is None or checkpointer.task.done():
        # A fresh context: the loop outlives the request that started it.
        checkpointer.task = asyncio.get_running_loop().create_task(
            checkpointer.loop(), context=contextvars.Context()
        )


def forget(run: Checkpointed) -> None:
    _here().live.discard(run)


async def save_now(runs, *, beat: bool = False) -> None:
    """Save the runs' new text; with `beat`, this process's heartbeat too, in the same commit."""
    texts = {}
    for run in runs:
        run.tick()
        text = run.checkpoint_text()
        if text is not None:
            texts[run.message_id] = text
    if texts or beat:
        alive = processes.NAME if beat else None
        try:
            await database_sync_to_async(services.generation_checkpoints)(texts, alive=alive)
        except Exception:  # the next tick tries again with the newer text; the final save decides
            log.exception("could not checkpoint %d answers", len(texts))


async def sweep_orphans() -> None:
    try:
        count = await database_sync_to_async(services.generations_interrupt_orphans)(
            lost_after_s=settings.WORKER_LOST_AFTER_S
        )
    except Exception:  # the next sweep tries again
        log.exception("could not sweep orphaned answers")
    else:
        if count:
            log.warning("marked %d answers of a process that is gone as interrupted", count)
