"""The engine's adapter cache, as the admin sees it: preload and pin, evict, and its state.

The engine (issue "Inference engine") owns the cache and offers `preload(ref, pin=True)`,
`evict(name)` and `adapter_cache_stats()`. This module is the only Django-side caller. In
INFERENCE_MODE=local the one worker is this web process's engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.conf import settings

from chatsite.adapters.models import Adapter
from chatsite.adapters.selectors import adapter_ref
from chatsite.chat.workers.engine_holder import local_engine
from chatsite.errors import ChatError


class CacheUnavailable(Exception):
    """The engine cannot do what was asked; the message says why, for the admin page."""


@dataclass(frozen=True)
class WorkerCacheState:
    worker: str
    loaded: bool
    pinned: bool
    memory_bytes: int | None


def adapter_preload(adapter: Adapter) -> None:
    _cache_call("preload", adapter_ref(adapter), pin=True)


def adapter_evict(adapter: Adapter) -> None:
    _cache_call("evict", adapter.slug)


def adapter_cache_state(adapter: Adapter) -> list[WorkerCacheState]:
    """One row per worker holding an engine: is this adapter loaded, pinned, how big."""
    entry = _cache_call("adapter_cache_stats")["adapters"].get(adapter.slug)
    return [
        WorkerCacheState(
            worker=f"local (pid {os.getpid()})",
            loaded=bool(entry and entry["loaded"]),
            pinned=bool(entry and entry["pinned"]),
            memory_bytes=entry["bytes"] if entry else None,
        )
    ]


def _cache_call(method: str, *args, **kwargs):
    if settings.INFERENCE_MODE != "local":
        raise CacheUnavailable(
            f"Cache controls reach the engine inside the web process (INFERENCE_MODE=local); "
            f"with INFERENCE_MODE={settings.INFERENCE_MODE} the workers manage their own caches."
        )
    try:
        engine = local_engine()
    except ChatError as error:
        raise CacheUnavailable(error.message) from None
    try:
        return getattr(engine, method)(*args, **kwargs)
    except Exception as error:  # the engine's own words (AdapterError and the like)
        raise CacheUnavailable(getattr(error, "message", None) or str(error)) from error
