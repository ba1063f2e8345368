"""A revoked API key ends the streams it opened (docs/ARCHITECTURE.md, "Security").

A key is checked when a request starts; a stream then lasts as long as its answer. So revoking
a key sends a notice to a channel-layer group of that key (Redis in celery mode, so every web
process hears it; in memory in local mode), and each stream opened with the key watches that
group for as long as it runs (`watching`). On the notice the stream stops the answer it started
(saved as `stopped`: its owner ended it), sends its client a `key_revoked` error and ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from chatsite.accounts.models import ApiKey

REVOKED = "key.revoked"
REVOKED_MESSAGE = "The API key of this request was revoked; its answer was stopped."


def key_group(key_id: int) -> str:
    return f"apikey.{key_id}"


def announce_revoked(key_id: int) -> None:
    """Tell every stream of the key, once the revocation is committed."""
    layer = get_channel_layer()
    if layer is not None:
        group = key_group(key_id)
        transaction.on_commit(lambda: async_to_sync(layer.group_send)(group, {"type": REVOKED}))


class Watch:
    """Whether the stream's key has been revoked. `wait`: the stream's current wait for its
    next event; a revocation ends it at once, as its timeout would (no task per event racing
    the notice)."""

    def __init__(self):
        self.revoked = False
        self.wait: asyncio.Timeout | None = None

    def revoke(self) -> None:
        self.revoked = True
        if self.wait is not None:
            with contextlib.suppress(RuntimeError):  # that wait is over: the stream checks anyway
                self.wait.reschedule(asyncio.get_running_loop().time())


@contextlib.asynccontextmanager
async def watching(key_id: int | None) -> AsyncIterator[Watch]:
    """A Watch of the key while the block runs; one that never fires for a request without one."""
    watch = Watch()
    layer = get_channel_layer() if key_id is not None else None
    if layer is None:
        yield watch
        return
    channel = await layer.new_channel()
    await layer.group_add(key_group(key_id), channel)
    listener = asyncio.get_running_loop().create_task(_listen(layer, channel, watch))
    try:
        # Revoked between the request's check and joining the group: no notice would come.
        if not await sync_to_async(_is_live)(key_id):
            watch.revoke()
        yield watch
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await layer.group_discard(key_group(key_id), channel)


async def _listen(layer, channel: str, watch: Watch) -> None:
    while (await layer.receive(channel)).get("type") != REVOKED:
        pass
    watch.revoke()


def _is_live(key_id: int) -> bool:
    return ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True).exists()
